"""The contract shared by the gateway and the agents (vapor.agentapi): one set of rules, checked here once."""

from __future__ import annotations

import datetime as dt
import re
import subprocess
from pathlib import Path

import pytest

from vapor.agentapi import envelope, errors
from vapor.agentapi.journalquery import epoch_us, parse_priority, parse_time, priority_name, unit_name

REPO = Path(__file__).resolve().parent.parent


@pytest.mark.parametrize(
    ("given", "level"),
    [(0, 0), ("0", 0), ("7", 7), (" ERR ", 3), ("error", 3), ("emerg", 0), ("emergency", 0), ("crit", 2),
     ("critical", 2), ("warn", 4), ("warning", 4), ("notice", 5), ("info", 6), ("debug", 7)],
)  # fmt: skip
def test_a_priority_by_number_or_either_name(given: str | int, level: int) -> None:
    assert parse_priority(given) == level


@pytest.mark.parametrize("given", [8, -1, "8", "-1", "loud", "", True, "3.0"])
def test_other_priorities_are_refused(given: str | int) -> None:
    with pytest.raises(ValueError, match="must be 0-7 or one of emerg"):
        parse_priority(given)


def test_entries_show_the_long_names() -> None:
    assert [priority_name(level) for level in (0, 3, 7, None, 9)] == ["emergency", "error", "debug", "info", "info"]


def test_times_in_both_forms_are_utc_to_the_microsecond() -> None:
    assert parse_time("1700000000.000001") == dt.datetime(2023, 11, 14, 22, 13, 20, 1, tzinfo=dt.UTC)
    assert epoch_us(parse_time("4102444800.123457")) == 4_102_444_800_123_457  # exact, no float rounding
    assert parse_time("2025-08-01T10:00:00Z") == parse_time("2025-08-01T12:00:00+02:00")
    assert parse_time("2025-08-01T10:00:00") == dt.datetime(2025, 8, 1, 10, tzinfo=dt.UTC)  # no offset: UTC
    assert epoch_us(parse_time("0")) == 0


@pytest.mark.parametrize("given", ["yesterday", "2025-13-01T00:00:00Z", "1969-12-31T23:59:59Z", "1e9", "-5", ""])
def test_other_times_are_refused(given: str) -> None:
    with pytest.raises(ValueError, match="ISO 8601 time"):
        parse_time(given)


def test_a_service_is_its_unit() -> None:
    assert unit_name("sshd") == "sshd.service" and unit_name("dbus.socket") == "dbus.socket"


def test_an_agent_answer_is_its_data_or_its_refusal() -> None:
    assert envelope.unwrap(200, envelope.success({"a": 1})) == {"a": 1}
    with pytest.raises(errors.Refusal) as refused:
        envelope.unwrap(404, envelope.error(errors.NOT_FOUND, "no such user", "looked in /etc/passwd"))
    assert (refused.value.status, refused.value.code, refused.value.message) == (404, "NOT_FOUND", "no such user")
    assert refused.value.details == "looked in /etc/passwd"
    with pytest.raises(errors.Refusal) as bare:
        envelope.unwrap(500, {"status": "error"})
    assert bare.value.code == errors.AGENT_ERROR
    for body in (None, [], {"status": "ok"}, "text"):
        with pytest.raises(envelope.NotAnEnvelope):
            envelope.unwrap(502, body)


def test_empty_details_are_left_out() -> None:
    assert envelope.error(errors.CONFLICT, "busy", "") == {
        "status": "error",
        "error": {"code": "CONFLICT", "message": "busy"},
    }
    model = envelope.Failure(error=envelope.ErrorBody(code="CONFLICT", message="busy"))
    assert model.model_dump(exclude_none=True) == envelope.error("CONFLICT", "busy")


def test_error_codes_are_declared_once() -> None:
    """Every component names a code through vapor.agentapi.errors; nothing spells one as a new constant."""
    codes = [name for name in vars(errors) if name.isupper() and isinstance(getattr(errors, name), str)]
    assert codes and all(getattr(errors, name) == name for name in codes)
    files = subprocess.run(["git", "ls-files", "*.py"], cwd=REPO, capture_output=True, text=True, check=True).stdout
    pattern = re.compile(rf'^\s*({"|".join(codes)})\s*(:\s*\w+\s*)?=\s*"', re.M)
    again = [
        f"{path}: {match.group(1)}"
        for path in files.split()
        if path != "vapor/agentapi/errors.py" and not path.startswith("tests/")
        for match in pattern.finditer((REPO / path).read_text())
    ]
    assert again == []
