"""A local server process that the project started, found again by its PID file.

The PID file records the PID with the process's start time (from /proc/<pid>/stat); a PID is only
ever signalled while /proc shows that same start time, so `nba infra down` never touches a process
it did not start, even after the OS recycled the PID. (The command line is no identity: Redis
rewrites its own process title.)
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from policies.errors import InfraError

__all__ = [
    "ManagedProcess",
    "PidFile",
    "ProcessState",
    "port_is_free",
    "require_free_ports",
    "wait_until",
]


# Servers started by this process, kept so that stopping them can reap them; a server outlives
# the `nba infra up` that started it (its own session), so nothing waits on them at exit.
_CHILDREN: dict[int, subprocess.Popen[bytes]] = {}


@dataclass(frozen=True)
class ProcessState:
    """What `status` reports for one service."""

    name: str
    running: bool
    pid: int | None
    ports: tuple[int, ...]
    healthy: bool
    detail: str


def port_is_free(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


def wait_until(check: Callable[[], bool], timeout_s: float, interval_s: float = 0.25) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(interval_s)
    return check()


def _stat_fields(pid: int) -> list[str] | None:
    """/proc/<pid>/stat after the command name (which may hold spaces): state is [0]."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat.rsplit(")", 1)[1].split()


def _start_time_of(pid: int) -> int | None:
    """Clock ticks since boot at which the process started; None when gone or a zombie."""
    fields = _stat_fields(pid)
    if fields is None or fields[0] == "Z":
        return None
    return int(fields[19])  # field 22 of stat(5), counted from the state field (3)


@dataclass(frozen=True)
class PidFile:
    """The record of a process we started: PID, exact command line, ports, start time."""

    name: str
    run_dir: Path

    @property
    def path(self) -> Path:
        return self.run_dir / f"{self.name}.pid.json"

    def record(self) -> dict[str, object] | None:
        try:
            data: dict[str, object] = json.loads(self.path.read_text())
        except (OSError, ValueError):
            return None
        return data

    def live_pid(self) -> int | None:
        """The recorded PID, if that process is alive and still runs the recorded command."""
        record = self.record()
        if record is None:
            return None
        pid = int(str(record["pid"]))
        if _start_time_of(pid) != record.get("start_time"):
            return None
        return pid

    def ports(self) -> tuple[int, ...]:
        record = self.record() or {}
        return tuple(int(p) for p in record.get("ports", []))  # type: ignore[attr-defined]  # JSON list

    def write(self, pid: int, argv: Sequence[str], ports: Sequence[int]) -> None:
        record = {
            "pid": pid,
            "start_time": _start_time_of(pid),
            "argv": list(argv),
            "ports": list(ports),
            "started_at": datetime.now(UTC).isoformat(),
        }
        self.path.write_text(json.dumps(record, indent=2))

    def stop(self, timeout_s: float = 30.0) -> bool:
        """SIGTERM, then SIGKILL after the timeout. False when nothing of ours was running."""
        pid = self.live_pid()
        if pid is None:
            self.path.unlink(missing_ok=True)
            return False
        os.kill(pid, signal.SIGTERM)
        if not wait_until(lambda: _is_gone(pid), timeout_s):
            os.kill(pid, signal.SIGKILL)
            wait_until(lambda: _is_gone(pid), 10.0)
        _reap(pid)
        self.path.unlink(missing_ok=True)
        return True


@dataclass(frozen=True)
class ManagedProcess:
    """One server process owned by the project: its command, its PID file and its log."""

    name: str
    argv: tuple[str, ...]
    ports: tuple[int, ...]
    run_dir: Path

    @property
    def pid_file(self) -> PidFile:
        return PidFile(self.name, self.run_dir)

    @property
    def log_file(self) -> Path:
        return self.run_dir / f"{self.name}.log"

    def start(self) -> int:
        self.run_dir.mkdir(parents=True, exist_ok=True)
        with self.log_file.open("ab") as log:
            proc = subprocess.Popen(  # noqa: S603  # argv is built by the project, never from user text
                list(self.argv),
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,  # Ctrl-C in the shell must not kill the servers mid-write
            )
        self.pid_file.write(proc.pid, self.argv, self.ports)
        _CHILDREN[proc.pid] = proc
        return proc.pid

    def log_tail(self, lines: int = 3) -> str:
        try:
            text = self.log_file.read_text(errors="replace")
        except OSError:
            return ""
        return " | ".join(line.strip() for line in text.strip().splitlines()[-lines:])


def _is_gone(pid: int) -> bool:
    return _start_time_of(pid) is None


def _reap(pid: int) -> None:
    """Collect the exit status when the server is a child of this very process."""
    child = _CHILDREN.pop(pid, None)
    if child is not None:
        child.wait(timeout=10)


def require_free_ports(name: str, ports: Sequence[int], env_names: Sequence[str]) -> None:
    for port, env_name in zip(ports, env_names, strict=True):
        if not port_is_free(port):
            raise InfraError(
                f"{name}: port {port} is busy (another process listens on it); "
                f"stop that process or set {env_name} to a free port"
            )
