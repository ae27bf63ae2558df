"""A real systemd-journald for one test: a journal namespace instance of its own.

``/lib/systemd/systemd-journald <namespace>`` listens on
``/run/systemd/journal.<namespace>/`` (``socket``: the native protocol,
``dev-log``: syslog, ``stdout``) and writes ``<journal>/<machine-id>.<namespace>/``,
so the machine's own journal and its sockets (``/run/systemd/journal``,
``/dev/log``) are never touched. Its settings come from a drop-in,
``/run/systemd/journald@<namespace>.conf.d/`` (systemd 252 reads the main
``journald@<namespace>.conf`` only from /etc): volatile storage, so the files
live in ``/run/log/journal/<machine-id>.<namespace>/``; no forwarding (an
emergency entry would otherwise be sent to every terminal by wall); no rate
limit; and a retention time, without which an instance that was not started by
socket activation exits after about 30 s without a client (measured: it goes,
leaving its sockets behind, so senders get ECONNREFUSED).

Live entries carry no ``_SYSTEMD_UNIT`` here (PID 1 is not systemd): they are
found by ``SYSLOG_IDENTIFIER``. ``systemd-cat`` (252) has no ``--namespace``, so
entries are sent as native-protocol datagrams (``send``) or by the real
``logger`` to the instance's syslog socket (``logger``).

``stop()`` ends journald by its PID and removes its sockets, its journal files,
the drop-in, and the folders it made (``/run/log/journal`` when it did not exist).
The fixture ``journal`` (a Journald the agent reads) is imported by the test
modules that use it.

``write_journal`` makes a journal file with given entries instead, through the
real ``systemd-journal-remote`` reading journal export format: its entries
can carry fields live ones lack here, such as ``_SYSTEMD_UNIT``.
"""

from __future__ import annotations

import contextlib
import shutil
import socket
import struct
import subprocess
import time
import uuid
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest

from vapor.agent.host.journal import JOURNAL_PATH_ENV

from .processes import log_tail, terminate

JOURNALD = "/lib/systemd/systemd-journald"
RUNTIME_ROOT = Path("/run/systemd")
VOLATILE_ROOT = Path("/run/log/journal")
SETTINGS = """\
# Vapor test instance: removed by the test that made it.
[Journal]
Storage=volatile
RuntimeMaxUse=64M
MaxRetentionSec=1d
RateLimitIntervalSec=0
ForwardToSyslog=no
ForwardToKMsg=no
ForwardToConsole=no
ForwardToWall=no
"""


JOURNAL_REMOTE = "/lib/systemd/systemd-journal-remote"


def write_journal(path: Path, entries: Iterable[Mapping[str, object]]) -> Path:
    """A journal file at ``path`` (``*.journal``) holding ``entries``, each a mapping of journal fields."""
    export = "".join("".join(f"{name}={value}\n" for name, value in entry.items()) + "\n" for entry in entries)
    path.parent.mkdir(parents=True, exist_ok=True)
    done = subprocess.run([JOURNAL_REMOTE, f"--output={path}", "-"], input=export.encode(), capture_output=True)
    if done.returncode != 0 or not path.exists():
        raise JournaldError(f"systemd-journal-remote wrote no {path}: {done.stderr.decode(errors='replace')}")
    return path


class JournaldError(RuntimeError):
    """journald did not start."""


def native_datagram(fields: dict[str, str | bytes]) -> bytes:
    """Fields in the journal's native protocol: ``KEY=value`` lines, or the binary form for multi-line values."""
    out = bytearray()
    for name, value in fields.items():
        data = value.encode() if isinstance(value, str) else value
        if b"\n" in data:
            out += name.encode() + b"\n" + struct.pack("<Q", len(data)) + data + b"\n"
        else:
            out += name.encode() + b"=" + data + b"\n"
    return bytes(out)


class Journald:
    """One journald namespace instance; ``directory`` is the journal folder a reader opens with ``path=``."""

    def __init__(self) -> None:
        self.namespace = f"vapor-test-{uuid.uuid4().hex[:8]}"
        self.identifier = f"vt-{uuid.uuid4().hex[:8]}"  # the syslog identifier entries are sent as by default
        machine_id = Path("/etc/machine-id").read_text().strip()
        self.directory = VOLATILE_ROOT / f"{machine_id}.{self.namespace}"
        self.sockets = RUNTIME_ROOT / f"journal.{self.namespace}"
        self.dropin = RUNTIME_ROOT / f"journald@{self.namespace}.conf.d"
        self.log_path = Path(f"/tmp/{self.namespace}.log")
        self.proc: subprocess.Popen[bytes] | None = None
        # folders that journald or the drop-in create when missing, removed after when they are empty again
        self._missing = [p for p in (VOLATILE_ROOT, VOLATILE_ROOT.parent, RUNTIME_ROOT) if not p.exists()]

    def start(self, timeout: float = 30.0) -> Journald:
        """Start journald and wait for its socket and its first journal file (cleans up if it does not start)."""
        try:
            return self._start(timeout)
        except BaseException:
            self.stop()
            raise

    def _start(self, timeout: float) -> Journald:
        self.dropin.mkdir(parents=True)
        (self.dropin / "vapor-test.conf").write_text(SETTINGS)
        # a clean environment: no NOTIFY_SOCKET or LISTEN_FDS of whatever started the tests; logs to stderr, not kmsg
        env = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "SYSTEMD_LOG_TARGET": "console"}
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(
                [JOURNALD, self.namespace],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=env,
                start_new_session=True,
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise JournaldError(f"journald exited with {self.proc.returncode}:\n{self.tail()}")
            if (self.sockets / "socket").exists() and any(self.directory.glob("*.journal")):
                return self
            time.sleep(0.05)
        raise JournaldError(f"journald did not start within {timeout:.0f}s:\n{self.tail()}")

    def send(self, message: str, *, priority: int = 6, identifier: str | None = None, **fields: str) -> None:
        """One entry over the native socket, as ``sd_journal_send`` would (the sender's PID is this process)."""
        sender = identifier or self.identifier
        datagram = native_datagram(
            {"MESSAGE": message, "PRIORITY": str(priority), "SYSLOG_IDENTIFIER": sender, **fields}
        )
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sender:
            sender.sendto(datagram, str(self.sockets / "socket"))

    def logger(self, message: str, *, priority: str = "user.info", identifier: str | None = None) -> None:
        """One entry through the syslog socket, written by the real ``logger``."""
        target = ["--socket", str(self.sockets / "dev-log"), "--socket-errors=on"]
        command = ["logger", *target, "--tag", identifier or self.identifier, "--priority", priority, "--", message]
        subprocess.run(command, check=True, capture_output=True)

    def rotate(self) -> None:
        """Close the journal files and start new ones (``journalctl --namespace --rotate``)."""
        subprocess.run(["journalctl", f"--namespace={self.namespace}", "--rotate"], check=True, capture_output=True)

    def entries(self, **match: str) -> list[dict[str, Any]]:
        """The entries written so far that match every ``FIELD=value`` given, oldest first (read from the files)."""
        from systemd import journal

        reader = journal.Reader(path=str(self.directory))
        try:
            for name, value in match.items():
                reader.add_match(**{name: value})
            return list(reader)
        finally:
            reader.close()

    def stop(self) -> None:
        """Stop journald by its PID (SIGKILL after 10 s) and remove everything it and ``start`` made."""
        terminate(self.proc)
        for folder in (self.sockets, self.directory, self.dropin):
            shutil.rmtree(folder, ignore_errors=True)
        for folder in self._missing:
            with contextlib.suppress(OSError):  # not empty: someone else uses it now
                folder.rmdir()
        self.log_path.unlink(missing_ok=True)

    def tail(self, lines: int = 30) -> str:
        """The end of journald's own log."""
        return log_tail(self.log_path, lines)

    def __enter__(self) -> Journald:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


@pytest.fixture
def journal(monkeypatch: pytest.MonkeyPatch) -> Iterator[Journald]:
    """A live journald whose folder the agent's /logs and /ws/logs read during the test (``$VAPOR_JOURNAL_PATH``)."""
    with Journald() as journald:
        monkeypatch.setenv(JOURNAL_PATH_ENV, str(journald.directory))
        yield journald
