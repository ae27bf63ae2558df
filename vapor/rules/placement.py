"""Where a VirtualMachine should run: a plain decision over hosts and their placed VMs.

No I/O here: the operator's ledger (:mod:`vapor.operator.ledger`) holds the facts, :func:`choose_host`
decides, and tests call it directly. A host gives out its logical CPUs times
the CPU allocation ratio (the Host's spec.cpuAllocationRatio, else the
operator's) as vCPUs, and its memory as it is (never over-committed). A VM
takes its ceilings (maxCpu, maxMemory; cpu and memory when unset): what it
may grow to live without a restart.

A VM whose disks use Images needs each of them to exist; it prefers the hosts
that already hold verified copies (fewer fetches, a faster start), and an
upload Image exists only on the hosts it was uploaded to, so such a VM goes
only there. A host that refused an image (no room for it) is ruled out.

A clone (spec.cloneFrom) goes where its source VM is: its disks are copied
from the source's files on that host. It waits (reason CloneSourceNotFound or
CloneSourceNotPlaced) while the source does not exist or is not placed.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from vapor.model import Host, Image, VirtualMachine, quantity_bytes
from vapor.model.host import DEFAULT_CPU_ALLOCATION_RATIO
from vapor.model.image import images_of

NO_IMAGES: Mapping[str, Image] = {}


@dataclass(frozen=True)
class Request:
    """What one VM takes from a host (or, summed, what a host gives or has given)."""

    cpu: int
    memory: int  # bytes

    @classmethod
    def of(cls, vm: VirtualMachine) -> Request:
        """What a VM takes from its host: the most it can be given live, its ceilings (maxCpu, maxMemory) when set.

        A running VM's cpu and memory can be raised live up to its ceilings
        with no look at its host (vCPU hot-plug, the balloon), so a host
        counts each VM at its ceilings: no live change can over-commit it.
        """
        spec = vm.spec
        memory = quantity_bytes(spec.memory)
        if spec.max_memory is not None:
            memory = max(memory, quantity_bytes(spec.max_memory))
        return cls(cpu=max(spec.cpu, spec.max_cpu or 0), memory=memory)

    def __add__(self, other: Request) -> Request:
        return Request(cpu=self.cpu + other.cpu, memory=self.memory + other.memory)

    def __sub__(self, other: Request) -> Request:
        return Request(cpu=self.cpu - other.cpu, memory=self.memory - other.memory)

    @classmethod
    def total(cls, requests: Iterable[Request]) -> Request:
        """The sum of some requests."""
        cpu = memory = 0
        for r in requests:
            cpu += r.cpu
            memory += r.memory
        return cls(cpu=cpu, memory=memory)


def allocatable(host: Host, cpu_ratio: int = DEFAULT_CPU_ALLOCATION_RATIO) -> Request | None:
    """What ``host`` may give to VMs (``cpu_ratio``: the cluster's ratio), or None before it reported capacity."""
    capacity = host.status.capacity if host.status else None
    if capacity is None or capacity.cpu is None or capacity.memory is None:
        return None
    ratio = host.spec.cpu_allocation_ratio or cpu_ratio
    return Request(cpu=capacity.cpu * ratio, memory=quantity_bytes(capacity.memory))


@dataclass(frozen=True)
class HostFacts:
    """What a decision reads of a Host that no VM changes: read once per batch, not once per VM and host."""

    ready: bool
    offered: Request | None  # allocatable(), None before the host reported capacity

    @classmethod
    def of(cls, host: Host, cpu_ratio: int = DEFAULT_CPU_ALLOCATION_RATIO) -> HostFacts:
        """The facts of ``host`` now."""
        return cls(ready=host.is_ready, offered=allocatable(host, cpu_ratio))


@dataclass
class Fit:
    """How a host stands for a VM: chosen, or why not."""

    host: str
    reasons: list[str] = field(default_factory=list)
    free_cpu: int = 0
    free_memory: int = 0
    holds: list[str] = field(default_factory=list)  # the VM's images this host holds verified copies of

    @property
    def fits(self) -> bool:
        """Whether nothing rules the host out."""
        return not self.reasons


def _mib(n: int) -> str:
    """Bytes as a quantity a person reads at a glance (2Gi, 768Mi)."""
    if n and n % 2**30 == 0:
        return f"{n // 2**30}Gi"
    return f"{n // 2**20}Mi"


def evaluate(
    vm: VirtualMachine,
    host: Host,
    placed: Iterable[Request],
    request: Request | None = None,
    cpu_ratio: int = DEFAULT_CPU_ALLOCATION_RATIO,
    images: Mapping[str, Image] = NO_IMAGES,
    source: VirtualMachine | None = None,
    facts: HostFacts | None = None,
) -> Fit:
    """How ``host`` stands for ``vm``, given the requests of the VMs already placed there (and the Images).

    ``source``: the VM a clone copies its disks from (placed: only its host will do). ``facts``: the
    host's :class:`HostFacts` when the caller read them already (placing many VMs at once).
    """
    request = request or Request.of(vm)
    fit = Fit(host.name)
    if vm.spec.host and vm.spec.host != host.name:
        fit.reasons.append(f"the VM asks for host {vm.spec.host}")
        return fit
    if source is not None and source.host != host.name:
        fit.reasons.append(f"the clone's source {source.name} has its disks on host {source.host}")
        return fit
    facts = facts or HostFacts.of(host, cpu_ratio)
    if not facts.ready:
        fit.reasons.append("not Ready")
    if host.spec.maintenance:
        fit.reasons.append("in maintenance")
    missing = host.missing_label(vm.spec.host_selector)
    if missing is not None:
        fit.reasons.append(f"label {missing[0]}={missing[1]} missing")
    _judge_images(vm, host.name, images, fit)
    offered = facts.offered
    if offered is None:
        fit.reasons.append("no capacity reported yet")
        return fit
    used = Request.total(placed)
    fit.free_cpu = offered.cpu - used.cpu
    fit.free_memory = offered.memory - used.memory
    if fit.free_cpu < request.cpu:
        fit.reasons.append(f"{max(fit.free_cpu, 0)} CPU free, {request.cpu} needed")
    if fit.free_memory < request.memory:
        fit.reasons.append(f"{_mib(max(fit.free_memory, 0))} memory free, {_mib(request.memory)} needed")
    return fit


def _judge_images(vm: VirtualMachine, host: str, images: Mapping[str, Image], fit: Fit) -> None:
    """Which of the VM's images ``host`` holds; rule it out for an upload image it lacks or an image it refused."""
    for name in images_of(vm):
        image = images.get(name)
        if image is None:
            continue  # choose_host refuses the VM as a whole
        entry = image.on_host(host)
        if entry is not None and entry.phase == "Ready":
            fit.holds.append(name)
        elif image.spec.source.upload is not None:
            where = ", ".join(image.ready_on()) or "no host yet"
            fit.reasons.append(f"upload image {name} is not here (it is only where it was uploaded: {where})")
        elif entry is not None and entry.phase == "Refused":
            fit.reasons.append(f"refused image {name}: {entry.reason or 'Refused'}")


@dataclass(frozen=True)
class Decision:
    """The outcome of placing one VM: a host, or a reason (a CamelCase word) and a message saying why none fits."""

    host: Host | None
    message: str
    reason: str = "Unschedulable"


def _image_problem(vm: VirtualMachine, images: Mapping[str, Image]) -> Decision | None:
    """A VM naming an Image that does not exist, or one that failed everywhere, cannot be placed at all."""
    names = images_of(vm)
    missing = [n for n in names if n not in images]
    if missing:
        which = ", ".join(missing)
        return Decision(None, f"image {which} does not exist; the VM is placed once it is created", "ImageNotFound")
    for name in names:
        if images[name].phase == "Failed":
            return Decision(None, f"image {name} failed on every host that tried it", "ImageFailed")
    return None


def _clone_problem(vm: VirtualMachine, source: VirtualMachine | None) -> Decision | None:
    """A clone waits for its source VM to exist and be placed (its disks are copied on the source's host)."""
    if vm.spec.clone_from is None:
        return None
    wanted = vm.spec.clone_from.vm
    if source is None or source.metadata.deletion_timestamp is not None:
        message = f"the clone's source VM {wanted} does not exist in namespace {vm.metadata.namespace}"
        return Decision(None, message, "CloneSourceNotFound")
    if source.host is None:
        message = f"the clone's source VM {wanted} is not placed on a host yet; the clone goes where it goes"
        return Decision(None, message, "CloneSourceNotPlaced")
    return None


def choose_host(
    vm: VirtualMachine,
    hosts: Iterable[Host],
    placed: Mapping[str, Iterable[Request]],
    cpu_ratio: int = DEFAULT_CPU_ALLOCATION_RATIO,
    images: Mapping[str, Image] = NO_IMAGES,
    source: VirtualMachine | None = None,
    facts: Mapping[str, HostFacts] | None = None,
) -> Decision:
    """Pick the fitting host that holds most of the VM's images, then with the most memory free, then by name.

    ``placed`` maps a host name to the requests of the VMs already on it (this
    VM excluded); ``images`` maps names to Images; ``source``: for a clone
    (spec.cloneFrom), its source VM, None when it does not exist (the clone
    goes only to the source's host); ``facts``: each host's :class:`HostFacts` by name, when the
    caller read them once for many VMs. The message of a failed
    decision names every host and why it was ruled out, so a person reading
    the VM's condition knows what to fix.
    """
    problem = _clone_problem(vm, source) or _image_problem(vm, images)
    if problem is not None:
        return problem
    fits: list[tuple[Fit, Host]] = []
    ruled_out: list[str] = []
    request = Request.of(vm)
    for host in sorted(hosts, key=lambda h: h.name):
        known = facts.get(host.name) if facts is not None else None
        fit = evaluate(vm, host, placed.get(host.name, ()), request, cpu_ratio, images, source, known)
        if fit.fits:
            fits.append((fit, host))
        else:
            ruled_out.append(f"{host.name}: {', '.join(fit.reasons)}")
    if fits:
        # max() keeps the first of equals, and fits are in name order: a tie goes to the alphabetically first
        best, host = max(fits, key=lambda pair: (len(pair[0].holds), pair[0].free_memory, pair[0].free_cpu))
        room = f"({best.free_cpu} CPU, {_mib(best.free_memory)} free before)"
        if best.holds:
            held = f"image{'s' if len(best.holds) > 1 else ''} {', '.join(best.holds)}"
            return Decision(host, f"placed on {host.name}, which holds {held} {room}")
        return Decision(host, f"placed on {host.name} {room}")
    if not ruled_out:
        return Decision(None, "no Host exists yet")
    want = f"{request.cpu} CPU and {_mib(request.memory)}"
    return Decision(None, f"no host can take {want}: " + "; ".join(ruled_out))
