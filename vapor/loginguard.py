"""Per-account brute-force protection for the places that check passwords with PAM (the agent, the gateway on a host).

PAM modules delay a refused password by seconds (pam_faildelay, pam_unix)
to slow guessing; done inside the PAM call, that delay holds a thread, so a
few concurrent bad logins fill the threads and every other account's logins
and refreshes wait. Here PAM returns at once (vapor.pamstack) and
``LoginGuard`` does the slowing, on the event loop, per account:

- one check of an account at a time: a second one while the first runs (or
  waits out its failure delay) is refused at once, without asking PAM;
- a refused password is answered after ``fail_delay`` seconds, during which
  the account stays busy (one guess per account per delay);
- after ``free_failures`` refusals in a row, the account backs off: no check
  for ``fail_delay`` seconds after the answer, doubling with each further
  refusal up to ``backoff_max``; a right password resets it, and so does ``forget_after``
  seconds without a refusal.

A refused check raises ``LoginBackoff`` with the seconds to wait; the caller
answers 429 RATE_LIMITED. The state is per process and bounded
(``capacity`` accounts; the oldest idle ones are forgotten first). Unknown
names back off like real ones, so the answers tell nothing about which
accounts exist.

Thread pools (``pool``): password checks run in one, account look-ups (a
refresh's standing, a terminal's account) in another, so that checks never
queue the look-ups; the agent's chrooted worker runs the rest (useradd,
chpasswd) in a third.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, TypeVar

T = TypeVar("T")

POOL_THREADS = {"password": 8, "lookup": 4, "work": 4}
_pools: dict[str, ThreadPoolExecutor] = {}


def pool(kind: str) -> ThreadPoolExecutor:
    """The process's pool for ``kind``: "password" (PAM password checks), "lookup" (account look-ups), "work"."""
    found = _pools.get(kind)
    if found is None:
        found = _pools[kind] = ThreadPoolExecutor(max_workers=POOL_THREADS[kind], thread_name_prefix=f"accounts-{kind}")
    return found


async def in_pool(kind: str, function: Callable[..., T], *args: Any) -> T:
    """``function(*args)`` in the pool for ``kind`` (see ``pool``); "work" outside the worker: the default threads."""
    if kind == "work":
        return await asyncio.to_thread(function, *args)
    return await asyncio.get_running_loop().run_in_executor(pool(kind), function, *args)


class LoginBackoff(Exception):
    """The account is checked too often: no check now; ``retry_after`` seconds until the next may be."""

    def __init__(self, retry_after: float) -> None:
        self.retry_after = max(1, math.ceil(retry_after))
        super().__init__(
            f"too many failed logins for this account: try again in {self.retry_after} s (other accounts are not held)"
        )


@dataclass
class _Account:
    failures: int = 0
    busy: bool = False
    blocked_until: float = 0.0
    last_failure: float = 0.0


class LoginGuard:
    """See the module's docstring."""

    def __init__(
        self,
        *,
        fail_delay: float = 2.0,
        free_failures: int = 3,
        backoff_max: float = 60.0,
        forget_after: float = 900.0,
        capacity: int = 10_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.fail_delay = fail_delay
        self.free_failures = free_failures
        self.backoff_max = backoff_max
        self.forget_after = forget_after
        self.capacity = capacity
        self.clock = clock
        self._accounts: dict[str, _Account] = {}

    def _state(self, username: str, now: float) -> _Account:
        state = self._accounts.get(username)
        if state is not None and not state.busy and now - state.last_failure > self.forget_after:
            state = None
        if state is None:
            self._make_room(now)
            state = self._accounts[username] = _Account()
        return state

    def _make_room(self, now: float) -> None:
        if len(self._accounts) < self.capacity:
            return
        idle = sorted((s.last_failure, name) for name, s in self._accounts.items() if not s.busy)
        for _, name in idle[: max(1, len(idle) // 10)]:  # the oldest tenth, at least one
            del self._accounts[name]

    def _wait(self, failures: int) -> float:
        if failures < self.free_failures:
            return 0.0
        return float(min(self.backoff_max, self.fail_delay * 2 ** (failures - self.free_failures)))

    async def check(self, username: str, attempt: Callable[[], Awaitable[T | None]]) -> T | None:
        """``attempt()`` (None: a refused password) under the account's guard; LoginBackoff when it may not run."""
        now = self.clock()
        state = self._state(username, now)
        if state.busy:
            raise LoginBackoff(self.fail_delay)
        if now < state.blocked_until:
            raise LoginBackoff(state.blocked_until - now)
        state.busy = True
        try:
            result = await attempt()
            if result is not None:
                self._accounts.pop(username, None)
                return result
            state.failures += 1
            await asyncio.sleep(self.fail_delay)
            state.last_failure = self.clock()
            state.blocked_until = state.last_failure + self._wait(state.failures)
            return None
        finally:
            state.busy = False
