"""/api/v1/logs: a page of a host's systemd journal, newest first, read by its agent.

Host-scoped (``?host=``, see _hostscope). The query string is checked here
strictly (unknown parameters too) before the agent is asked; the agent reads
the journal with systemd-python and counts every matching entry
(``total_count``) while reading only the requested page whole. Viewers
read only the units the gateway allows them (see _logscope).
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, field_validator
from quart import Blueprint
from quart_schema import document_response, tag, validate_querystring, validate_response

from vapor.agentapi.errors import INVALID_INPUT
from vapor.agentapi.journalquery import MAX_PAGE, MAX_PAGE_SIZE, SERVICE_PATTERN, TIME_HELP, parse_priority, parse_time

from ._agentdocs import documents_agent_errors
from ._agents import ask_agent
from ._errors import APIError
from ._guard import current_user, require
from ._hostscope import HOST_PARAMETER_HELP
from ._logscope import check_log_access
from ._schema import Failure, Success

blueprint = Blueprint("logs", __name__, url_prefix="/api/v1/logs")


class LogsQuery(BaseModel):
    """Which host, which entries and which page."""

    model_config = ConfigDict(extra="forbid")

    host: str | None = Field(default=None, description=HOST_PARAMETER_HELP)
    service: str | None = Field(
        default=None,
        pattern=SERVICE_PATTERN,
        description="A systemd unit (`sshd` means `sshd.service`); entries logged as that syslog identifier match too.",
        examples=["sshd"],
    )
    priority: str | None = Field(
        default=None,
        description="That level and more severe: 0-7 or emerg, alert, crit, err, warning, notice, info, debug.",
        examples=["err"],
    )
    since: str | None = Field(default=None, description=TIME_HELP, examples=["2025-08-01T10:00:00Z"])
    until: str | None = Field(default=None, description=TIME_HELP, examples=["1754042400"])
    page: int = Field(default=1, ge=1, le=MAX_PAGE, description="From 1.")
    page_size: int = Field(default=100, ge=1, le=MAX_PAGE_SIZE, description=f"Entries per page, 1-{MAX_PAGE_SIZE}.")

    @field_validator("priority")
    @classmethod
    def _known_priority(cls, value: str | None) -> str | None:
        return None if value is None else str(parse_priority(value))

    @field_validator("since", "until")
    @classmethod
    def _a_time(cls, value: str | None) -> str | None:
        return None if value is None else parse_time(value).isoformat(timespec="microseconds")

    def window_is_ordered(self) -> bool:
        """Whether since <= until (both RFC 3339 UTC of the same width once validated)."""
        return self.since is None or self.until is None or self.since <= self.until


class LogEntry(BaseModel):
    """One journal entry."""

    timestamp: str | None = Field(description="When it was logged (RFC 3339, UTC).", examples=["2025-08-01T10:30:00Z"])
    priority: str = Field(description="emergency, alert, critical, error, warning, notice, info or debug.")
    unit: str = Field(description="The systemd unit without `.service`, else the syslog identifier.", examples=["sshd"])
    message: str = Field(examples=["Accepted publickey for user"])
    hostname: str | None = Field(default=None, examples=["server1"])
    pid: int | None = Field(default=None, examples=[1234])


class LogPage(BaseModel):
    """A page of matching entries, newest first."""

    logs: list[LogEntry]
    total_count: int = Field(ge=0, description="How many entries match, on every page together.")
    page: int = Field(ge=1)
    page_size: int = Field(ge=1, le=MAX_PAGE_SIZE)


@blueprint.get("")
@require("viewer")
@tag(["logs"])
@validate_querystring(LogsQuery)
@validate_response(Success[LogPage])
@document_response(Failure, 400)
@document_response(Failure, 403)
@documents_agent_errors
async def query_logs(query_args: LogsQuery) -> Success[LogPage]:
    """Entries of the host's systemd journal filtered by service, priority and time, a page at a time.

    Role admin reads every entry. A viewer gets 403 PERMISSION_DENIED unless
    `service` names one of the units the gateway lets viewers read
    (VAPOR_VIEWER_LOG_UNITS, chart gateway.viewerLogUnits; none by default).
    """
    user = current_user()
    check_log_access(user.username, user.role, query_args.service)
    if not query_args.window_is_ordered():
        raise APIError(400, INVALID_INPUT, "since must not be after until")
    params = query_args.model_dump(exclude={"host"}, exclude_none=True)
    data = await ask_agent("GET", "/logs", host=query_args.host, params=params)
    return Success[LogPage](data=LogPage.model_validate(data))
