"""GET /logs on the agent with 100,000 journal entries: first page and page 500 (page_size 100).

Writes a journal of ENTRIES entries (three units, all priorities) with the
real systemd-journal-remote, then times the agent's own read
(``vapor.agent.host.journal.read_page``, what the node API runs in a thread)
for page 1 and page 500, without and with a unit filter. Baseline: reading
every matching entry whole with ``journal.Reader`` (``get_previous``), the
naive way, which the endpoint avoids by reading only timestamps to count.
"""

from __future__ import annotations

import functools
import shutil
import statistics
import subprocess
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from vapor.agent.host.journal import LogQuery, read_page

ENTRIES = 100_000
ROUNDS = 5
START_US = 1_700_000_000_000_000


def _write_journal(folder: Path) -> None:
    lines = []
    for i in range(ENTRIES):
        lines.append(
            f"__REALTIME_TIMESTAMP={START_US + i * 1000}\n__MONOTONIC_TIMESTAMP={i + 1}\n"
            f"_BOOT_ID=00112233445566778899aabbccddeeff\n_SYSTEMD_UNIT={('sshd', 'cron', 'nginx')[i % 3]}.service\n"
            f"PRIORITY={i % 8}\nMESSAGE=bench entry {i} with some words of text\n_HOSTNAME=bench\n_PID={i % 30000}\n\n"
        )
    subprocess.run(
        ["/lib/systemd/systemd-journal-remote", f"--output={folder}/bench.journal", "-"],
        input="".join(lines).encode(),
        capture_output=True,
        check=True,
    )


def _median_ms(run: Callable[[], Any]) -> tuple[float, Any]:
    times, result = [], None
    for _ in range(ROUNDS):
        start = time.perf_counter()
        result = run()
        times.append((time.perf_counter() - start) * 1000)
    return statistics.median(times), result


def _naive(path: str) -> int:
    from systemd import journal  # type: ignore[import-untyped]

    reader = journal.Reader(path=path)
    reader.seek_tail()
    count = 0
    while reader.get_previous():
        count += 1
    reader.close()
    return count


def main() -> None:
    """Print the figures next to the baseline."""
    folder = Path(tempfile.mkdtemp(prefix="vapor-bench-journal-"))
    try:
        start = time.perf_counter()
        _write_journal(folder)
        print(f"journal of {ENTRIES} entries written in {time.perf_counter() - start:.1f} s")
        path = str(folder)
        for label, query in (
            ("page 1", LogQuery(page=1)),
            ("page 500", LogQuery(page=500)),
            ("page 1, service=sshd", LogQuery(page=1, service="sshd")),
            ("page 30, service=sshd, priority=err", LogQuery(page=30, service="sshd", priority=3)),
        ):
            ms, data = _median_ms(functools.partial(read_page, query, path))
            print(f"{label:40s} {ms:8.1f} ms  total_count={data['total_count']} entries={len(data['logs'])}")
        ms, count = _median_ms(lambda: _naive(path))
        print(f"{'baseline: every entry read whole':40s} {ms:8.1f} ms  entries={count}")
    finally:
        shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()
