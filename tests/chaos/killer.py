"""The chaos suite's killer: SIGKILL to one component at a random moment, a restart a few seconds later.

Each :class:`Part` knows how to crash one component (agent, operator, gateway,
kube-apiserver, etcd), start it again, and tell when it is back. The
:class:`Killer` runs in a thread: it waits a random while, kills one part,
leaves it dead for a few seconds, restarts it and waits until it is back,
then picks the next. It records every outage, so the REST wave can tell a
refused connection while the gateway was down from one while it was up.
"""

from __future__ import annotations

import random
import threading
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from ..support.wait import wait_until


@dataclass
class Part:
    """One component the killer may crash: ``kill`` is a SIGKILL, ``start`` brings it back, ``back`` says it is."""

    name: str
    kill: Callable[[], None]
    start: Callable[[], None]
    back: Callable[[], bool] = lambda: True


@dataclass
class Outage:
    """One kill: which part, and from when (kill) to when (back again), in time.monotonic()."""

    part: str
    began: float
    ended: float | None = None


@dataclass
class Killer:
    """Kills the parts at random moments until stopped (or once each, in order, with ``rounds``)."""

    parts: Sequence[Part]
    pause: tuple[float, float] = (3.0, 8.0)  # seconds between one part back and the next kill
    down: tuple[float, float] = (2.0, 5.0)  # seconds a killed part stays dead
    back_timeout: float = 120.0
    seed: int | None = None
    outages: list[Outage] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def __post_init__(self) -> None:
        self._random = random.Random(self.seed)

    @property
    def kills(self) -> Counter[str]:
        """Kills so far, by part."""
        return Counter(o.part for o in self.outages)

    def start(self, order: Sequence[str] | None = None) -> Killer:
        """Kill in a thread: the parts named in ``order`` once each, or at random until stopped."""
        self._thread = threading.Thread(target=self._run, args=(order,), daemon=True, name="chaos-killer")
        self._thread.start()
        return self

    def stop(self) -> None:
        """Kill no more; the part that is down is restarted first."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join()

    def done(self) -> bool:
        """Whether the thread has ended (a run with ``order`` ends by itself)."""
        return self._thread is not None and not self._thread.is_alive()

    def down_at(self, part: str, when: float) -> bool:
        """Whether ``part`` was down (killed and not back yet) at ``when``, with a second's slack either side."""
        return any(
            o.part == part and o.began - 1 <= when <= (o.ended if o.ended is not None else float("inf")) + 1
            for o in self.outages
        )

    def _run(self, order: Sequence[str] | None) -> None:
        by_name = {p.name: p for p in self.parts}
        queue = list(order) if order is not None else None
        while not self._stop.wait(self._random.uniform(*self.pause)):
            if queue is not None and not queue:
                return
            part = by_name[queue.pop(0)] if queue is not None else self._random.choice(list(self.parts))
            self.crash(part)

    def crash(self, part: Part) -> None:
        """Kill ``part``, leave it down a few seconds, start it and wait until it is back."""
        outage = Outage(part.name, time.monotonic())
        self.outages.append(outage)
        part.kill()
        time.sleep(self._random.uniform(*self.down))
        try:
            part.start()
            wait_until(part.back, self.back_timeout, every=0.5, what=f"{part.name} back after a kill")
        except Exception as exc:  # reported by the test; the run goes on
            self.errors.append(f"{part.name} did not come back: {exc}")
        outage.ended = time.monotonic()
