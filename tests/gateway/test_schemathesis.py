"""A property-based run of schemathesis against the gateway's own OpenAPI document.

The real server (``python -m vapor.gateway`` on Hypercorn) against the real
control plane, called with an admin's token: every generated request must get
an answer that is not a 5xx and that fits the schema the document gives for
its status code.

The endpoints that act on a host through its agent (containers, Docker,
users, system, logs, network, storage) are left out here: no agent runs in
this test, so they could only answer "no such host", and generated requests
must never reach a real host's users or disks. Their inputs are tested case by
case in their own suites.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import content_type_conformance, response_schema_conformance

from vapor.devenv import ControlPlane

from .conftest import GatewayProcess, Users

pytestmark = pytest.mark.controlplane

GATEWAY_OWN_TAGS = "^(auth|hosts|vms|migrations|kubernetes)$"
EXAMPLES_PER_OPERATION = 25


@pytest.fixture
def fuzzed_gateway(
    control_plane: ControlPlane, gateway_config: dict[str, Any], tmp_path: Path
) -> Iterator[GatewayProcess]:
    env = {f"VAPOR_{k}": str(gateway_config[k]) for k in ("PAM_SERVICE", "ADMIN_GROUPS", "SECRET_NAMESPACE")}
    env["VAPOR_RATE_LIMIT"] = "0"  # hundreds of requests from one address; the limit has its own test
    process = GatewayProcess(control_plane.kubeconfig, env, tmp_path / "gateway.log")
    yield process.start()
    process.stop()


@pytest.fixture
def api_schema(fuzzed_gateway: GatewayProcess) -> Any:
    return schemathesis.openapi.from_url(f"{fuzzed_gateway.url}/openapi.json")


@pytest.fixture
def admin_token(fuzzed_gateway: GatewayProcess, users: Users) -> str:
    response = httpx.post(
        f"{fuzzed_gateway.url}/api/v1/auth/login",
        json={"username": users.admin.name, "password": users.admin.password},
        timeout=30,
    )
    assert response.status_code == 200, response.text
    return str(response.json()["data"]["token"])


def test_no_server_errors_and_answers_fit_the_schema(fuzzed_gateway: GatewayProcess, admin_token: str) -> None:
    # schemathesis' pytest plugin does not run under pytest 9 (it reads a private node attribute that is
    # gone), so the operations are driven here with hypothesis directly: the same strategies and checks.
    schema = schemathesis.openapi.from_url(f"{fuzzed_gateway.url}/openapi.json").include(tag_regex=GATEWAY_OWN_TAGS)
    headers = {"Authorization": f"Bearer {admin_token}"}
    failures: list[str] = []
    tested = 0
    for result in schema.get_all_operations():
        operation = result.ok()
        tested += 1

        @given(case=operation.as_strategy())
        @settings(
            max_examples=EXAMPLES_PER_OPERATION,
            deadline=None,
            suppress_health_check=list(HealthCheck),
            derandomize=True,  # the same requests on every run, so a failure can be reproduced
            database=None,
        )
        def exercise(case: Any) -> None:
            case.call_and_validate(
                base_url=fuzzed_gateway.url,
                headers=headers,
                checks=[not_a_server_error, response_schema_conformance, content_type_conformance],
            )

        try:
            exercise()
        except (Exception, BaseExceptionGroup) as exc:  # collect every operation's failure, then report them all
            failures.append(f"{operation.label}: {exc}")
    assert tested >= 20, f"only {tested} operations found in the OpenAPI document"
    assert not failures, "\n\n".join(failures)
