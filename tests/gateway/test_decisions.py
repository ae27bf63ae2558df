"""The gateway's plain decisions, called directly: action plans, the rate limiter, token checks, error fields."""

from __future__ import annotations

import time

import jwt
import pytest
from pydantic import ValidationError

from vapor.gateway._actions import plan
from vapor.gateway._errors import invalid_input
from vapor.gateway._ratelimit import RateLimiter
from vapor.gateway._tokens import InvalidToken, TokenSigner
from vapor.gateway._vmschema import CreateVMRequest
from vapor.model import ObjectMeta, VirtualMachine, VirtualMachineSpec, VirtualMachineStatus
from vapor.model.names import REQUESTED_BY_ANNOTATION, RESTART_ANNOTATION, STOP_MODE_ANNOTATION


def _vm(**status: object) -> VirtualMachine:
    return VirtualMachine(
        metadata=ObjectMeta(name="vm", namespace="ns", uid="u", annotations={RESTART_ANNOTATION: "old"}),
        spec=VirtualMachineSpec(memory="64Mi"),
        status=VirtualMachineStatus.model_validate(status) if status else None,
    )


@pytest.mark.parametrize(
    ("action", "force", "strategy", "stop_mode", "target"),
    [
        ("start", False, "Running", None, "Running"),
        ("stop", False, "Halted", None, "Stopped"),
        ("stop", True, "Halted", "force", "Stopped"),
        ("pause", False, "Paused", "absent", "Paused"),
        ("resume", False, "Running", None, "Running"),
    ],
)
def test_power_plans(action: str, force: bool, strategy: str, stop_mode: str | None, target: str) -> None:
    p = plan(action, force, "alice", _vm())  # type: ignore[arg-type]
    annotations = p.metadata.to_api()["annotations"]
    assert p.spec is not None and p.spec.to_api() == {"runStrategy": strategy}
    assert annotations[REQUESTED_BY_ANNOTATION] == "alice"
    if stop_mode == "absent":
        assert STOP_MODE_ANNOTATION not in annotations
    else:
        assert annotations[STOP_MODE_ANNOTATION] == stop_mode
    assert p.target_phase == target
    assert not p.done(_vm())
    assert not p.done(_vm(phase="Starting"))
    assert p.done(_vm(phase=target))
    assert "alice" in p.describe("alice")


def test_restart_plan_sets_a_new_value_and_waits_for_it() -> None:
    p = plan("restart", False, "bob", _vm())
    assert p.spec is None
    value = p.metadata.to_api()["annotations"][RESTART_ANNOTATION]
    assert value and value != "old"
    assert not p.done(_vm(phase="Running", lastRestartRequest="old"))
    assert p.done(_vm(phase="Running", lastRestartRequest=value))


def test_rate_limiter_window() -> None:
    limiter = RateLimiter(2)
    assert limiter.hit("a", now=0) == 0
    assert limiter.hit("a", now=1) == 0
    assert limiter.hit("a", now=2) == pytest.approx(58)
    assert limiter.hit("b", now=2) == 0  # per client
    assert limiter.hit("a", now=60) == 0  # a new window


def test_token_checks() -> None:
    signer = TokenSigner(b"k" * 64, 60)
    token, expires_at = signer.issue("carol", "viewer")
    claims = signer.verify(token)
    assert (claims.username, claims.role, claims.expires_at) == ("carol", "viewer", expires_at)
    header, payload, _signature = token.split(".")
    with pytest.raises(InvalidToken, match="signature"):
        TokenSigner(b"x" * 64, 60).verify(token)
    with pytest.raises(InvalidToken, match="malformed"):
        signer.verify(f"{header}.{payload}")
    forged_role = jwt.encode(
        {"sub": "carol", "role": "root", "iat": int(time.time()), "exp": int(time.time()) + 60, "iss": "vapor-gateway"},
        b"k" * 64,
        algorithm="HS256",
    )
    with pytest.raises(InvalidToken, match="malformed"):
        signer.verify(forged_role)
    expired = TokenSigner(b"k" * 64, -1).issue("carol", "viewer")[0]
    with pytest.raises(InvalidToken, match="expired"):
        signer.verify(expired)


def test_invalid_input_names_nested_fields() -> None:
    with pytest.raises(ValidationError) as caught:
        CreateVMRequest.model_validate({"name": "a", "memory": "1Gi", "disks": [{"name": "d", "size": "10"}]})
    error = invalid_input(caught.value)
    assert error.status == 400
    assert error.code == "INVALID_INPUT"
    assert error.fields and error.fields[0].field == "disks[0].size"
    assert error.message.startswith("invalid body: disks[0].size: disk size must be")


@pytest.mark.parametrize(("memory", "stored"), [(512, "512Mi"), ("2Gi", "2Gi"), ("16Mi", "16Mi")])
def test_memory_is_a_quantity_or_mebibytes(memory: object, stored: str) -> None:
    assert CreateVMRequest.model_validate({"name": "a", "memory": memory}).memory == stored
