"""/api/v1/system: a host's summary, CPU and memory, read live by its agent (psutil on the host).

Host-scoped (``?host=``, see _hostscope). ``summary`` has the contract's
fields (hostname, os, kernel, uptime in seconds, load_average); CPU and
memory, which the contract leaves open, use the names of the Host status.
"""

from __future__ import annotations

from pydantic import BaseModel, Field
from quart import Blueprint
from quart_schema import tag, validate_querystring, validate_response

from ._agentdocs import documents_agent_errors
from ._agents import ask_agent
from ._guard import require
from ._hostscope import HostQuery
from ._schema import Success

blueprint = Blueprint("system", __name__, url_prefix="/api/v1/system")


class SystemSummary(BaseModel):
    """What the host is and how long it has been up."""

    hostname: str = Field(examples=["server1"])
    os: str | None = Field(description="PRETTY_NAME of /etc/os-release.", examples=["Ubuntu 22.04 LTS"])
    kernel: str = Field(examples=["5.15.0-58-generic"])
    uptime: int = Field(ge=0, description="Seconds since boot.", examples=[8640000])
    load_average: list[float] = Field(description="Over 1, 5 and 15 minutes.", examples=[[1.5, 1.2, 0.9]])
    boot_time: str | None = Field(default=None, description="When the host booted (RFC 3339, UTC).")


class CPUDetail(BaseModel):
    """The host's processors and how busy they are (measured over 0.1 s)."""

    model: str | None = Field(description="Processor model name, as /proc/cpuinfo gives it.")
    cores: int | None = Field(description="Physical cores.")
    threads: int | None = Field(description="Logical CPUs.")
    frequency_mhz: float | None = Field(description="Current frequency, where the kernel tells it.")
    usage_percent: float = Field(ge=0, le=100, description="Busy time of all CPUs, in percent.")
    per_cpu_percent: list[float] = Field(description="Busy time of each logical CPU, in percent.")
    times_percent: dict[str, float] = Field(description="Share of each kind of CPU time (user, system, idle, ...).")
    load_average: list[float] = Field(description="Over 1, 5 and 15 minutes.")


class MemoryDetail(BaseModel):
    """Memory and swap of the host, in bytes."""

    total: int = Field(ge=0)
    available: int = Field(ge=0, description="Available to new work without swapping.")
    used: int = Field(ge=0, description="total - available.")
    free: int = Field(ge=0, description="Not used at all (not even as cache).")
    buffers: int = Field(ge=0)
    cached: int = Field(ge=0)
    shared: int = Field(ge=0)
    usage_percent: float = Field(ge=0, le=100)
    swap_total: int = Field(ge=0)
    swap_used: int = Field(ge=0)
    swap_free: int = Field(ge=0)
    swap_usage_percent: float = Field(ge=0, le=100)


@blueprint.get("/summary")
@require("viewer")
@tag(["system"])
@validate_querystring(HostQuery)
@validate_response(Success[SystemSummary])
@documents_agent_errors
async def summary(query_args: HostQuery) -> Success[SystemSummary]:
    """Hostname, operating system, kernel, uptime and load average of the host."""
    data = await ask_agent("GET", "/system/summary", host=query_args.host)
    return Success[SystemSummary](data=SystemSummary.model_validate(data))


@blueprint.get("/cpu")
@require("viewer")
@tag(["system"])
@validate_querystring(HostQuery)
@validate_response(Success[CPUDetail])
@documents_agent_errors
async def cpu(query_args: HostQuery) -> Success[CPUDetail]:
    """Processor model, cores and threads, and current usage (in total, per CPU, by kind of time)."""
    data = await ask_agent("GET", "/system/cpu", host=query_args.host)
    return Success[CPUDetail](data=CPUDetail.model_validate(data))


@blueprint.get("/memory")
@require("viewer")
@tag(["system"])
@validate_querystring(HostQuery)
@validate_response(Success[MemoryDetail])
@documents_agent_errors
async def memory(query_args: HostQuery) -> Success[MemoryDetail]:
    """Memory and swap: total, available, used, free, buffers, cache, in bytes and percent."""
    data = await ask_agent("GET", "/system/memory", host=query_args.host)
    return Success[MemoryDetail](data=MemoryDetail.model_validate(data))
