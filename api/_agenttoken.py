"""The gateway's identity towards the agents: a bearer token of the audience ``vapor-agent``.

The API server itself refuses that audience, so an agent cannot replay the
token against the Kubernetes API. It comes from the file
``VAPOR_AGENT_TOKEN_FILE`` (the chart projects one into the pod, re-read as
the kubelet rotates it), else (dev, tests) from the TokenRequest API for
``VAPOR_AGENT_SERVICE_ACCOUNT``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from pathlib import Path

from kubernetes.aio import client

from vapor.agentapi.errors import AGENT_AUTH_FAILED
from vapor.kube import Conflict, Kube, KubeError, NotFound
from vapor.kube._client import call
from vapor.model import names

from ._errors import APIError

log = logging.getLogger("vapor.gateway.agents")

TOKEN_REQUEST_SECONDS = 3600
TOKEN_FILE_REREAD = 60.0  # kubelet rotates projected tokens well before they expire


class GatewayToken:
    """The gateway's bearer token for agents: a token file, or one from the TokenRequest API."""

    def __init__(self, kube: Kube, token_file: str | None, service_account: str) -> None:
        self.kube = kube
        self.path = Path(token_file) if token_file else None
        namespace, _, name = service_account.partition("/")
        if not namespace or not name:
            raise ValueError(f"AGENT_SERVICE_ACCOUNT must read namespace/name, got {service_account!r}")
        self.namespace, self.name = namespace, name
        self._token = ""
        self._renew_at = 0.0
        self._lock = asyncio.Lock()

    async def get(self) -> str:
        """A token valid for a while yet."""
        if self._token and time.monotonic() < self._renew_at:
            return self._token
        async with self._lock:
            if not self._token or time.monotonic() >= self._renew_at:
                self._token, lifetime = await self._fetch()
                self._renew_at = time.monotonic() + lifetime
        return self._token

    def forget(self) -> None:
        """Drop the cached token (the agent refused it)."""
        self._token, self._renew_at = "", 0.0

    async def _fetch(self) -> tuple[str, float]:
        if self.path is not None:
            text = await asyncio.to_thread(self.path.read_text)
            return text.strip(), TOKEN_FILE_REREAD
        body = client.AuthenticationV1TokenRequest(
            spec=client.V1TokenRequestSpec(audiences=[names.AGENT_AUDIENCE], expiration_seconds=TOKEN_REQUEST_SECONDS)
        )
        request = self.kube.core.create_namespaced_service_account_token
        try:
            try:
                answer = await call(request(self.name, self.namespace, body))
            except NotFound:  # dev stack: nothing installed the ServiceAccount yet; the dev gateway may make it
                account = client.V1ServiceAccount(metadata=client.V1ObjectMeta(name=self.name))
                with contextlib.suppress(Conflict):
                    await call(self.kube.core.create_namespaced_service_account(self.namespace, account))
                answer = await call(request(self.name, self.namespace, body))
        except KubeError as exc:
            raise APIError(
                502, AGENT_AUTH_FAILED, "the gateway could not get its token for the agents", exc.message
            ) from None
        log.info("got a token for the agents", extra={"service_account": f"{self.namespace}/{self.name}"})
        if answer.status is None or not answer.status.token:
            raise APIError(502, AGENT_AUTH_FAILED, "the Kubernetes API gave the gateway no token for the agents")
        return str(answer.status.token), TOKEN_REQUEST_SECONDS * 0.8
