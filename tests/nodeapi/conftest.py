"""The node-local API against the session's real control plane: real TokenReviews, real ServiceAccount tokens.

``node`` is a running NodeAPI (see tests/support/nodeapi.py) with the system
routes; ``gw_client`` is a gateway app configured to reach it as the allowed
ServiceAccount, with the gateway tests' PAM users for logins.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest
from quart.typing import TestAppProtocol as TestApp
from quart.typing import TestClientProtocol as Client

from vapor.agent.nodeapi import system as system_api
from vapor.gateway import create_app
from vapor.kube import Kube

from ..conftest import Kubectl
from ..gateway.conftest import (  # noqa: F401
    Users,
    bearer,
    gateway_config,
    kube,
    login,
    pam_service_name,
    secret_namespace,
    users,
)
from ..support.nodeapi import NodeAPIHarness, running_node_api


@pytest.fixture
async def node(
    kube: Kube,  # noqa: F811
    kubectl: Kubectl,
    namespace: str,
) -> AsyncIterator[NodeAPIHarness]:
    name = f"node-{uuid.uuid4().hex[:8]}"
    async with running_node_api(kube, kubectl, namespace, name, routes=[system_api.routes]) as harness:
        yield harness


@pytest.fixture
async def gw_app(
    gateway_config: dict[str, Any],  # noqa: F811
    node: NodeAPIHarness,
) -> AsyncIterator[TestApp]:
    async with create_app({**gateway_config, **node.gateway_config()}).test_app() as test_app:
        yield test_app


@pytest.fixture
def gw_client(gw_app: TestApp) -> Client:
    return gw_app.test_client()
