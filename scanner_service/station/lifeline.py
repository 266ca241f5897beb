"""Processes that die with the station, and what the kernel knows about processes (Linux ``/proc``).

Every child of ``scanstation up`` is started through this module (``python -m scanner_service.station.lifeline
PARENT_PID -- PROGRAM ARGS``): it asks the kernel to SIGKILL the process when the supervisor dies
(``PR_SET_PDEATHSIG``), checks that the supervisor has not died already, and only then runs the program.
A worker also gives every process it forks (the RQ work horses) the same lifeline to the
worker. So a supervisor killed with SIGKILL takes its whole tree with it at once.

Signals are read from a pipe (:class:`SignalInbox`), never acted on inside a signal handler.

The rest reads ``/proc``: a process's start time (with its pid, a name no other process gets until the
machine reboots), command line, environment and children, and who listens on a TCP port; the
supervisor uses it to find and clear what an earlier station left.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import select
import signal
import sys
import threading
import time
from collections.abc import Iterable
from pathlib import Path

PR_SET_PDEATHSIG = 1  # <linux/prctl.h>
PR_SET_CHILD_SUBREAPER = 36
PROC = Path("/proc")

_libc = ctypes.CDLL(None, use_errno=True)
_forking_parent = [0]  # pid of the process that is forking; read in the child (a copy of this memory)


def set_parent_death_signal(sig: int = signal.SIGKILL) -> None:
    """Have the kernel send ``sig`` to this process when the thread that forked it ends.

    The setting survives exec (of a program that is not set-user-ID) but not fork: each child sets its own.
    """
    if _libc.prctl(PR_SET_PDEATHSIG, int(sig), 0, 0, 0) != 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))


def become_subreaper() -> None:
    """Orphans among this process's descendants become its children (not init's), for it to find and end."""
    if _libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))


def die_with_parent(parent_pid: int, sig: int = signal.SIGKILL) -> None:
    """Die with ``parent_pid``: set the parent-death signal, then exit now if that parent is gone already.

    The check closes the window between fork and prctl, in which a dying parent leaves no signal.
    """
    set_parent_death_signal(sig)
    if os.getppid() != parent_pid:
        os._exit(70)  # EX_SOFTWARE: the parent died before the lifeline was in place


def _before_fork() -> None:
    _forking_parent[0] = os.getpid()


def _after_fork_in_child() -> None:
    die_with_parent(_forking_parent[0])


def children_die_with_me() -> None:
    """Every process this one forks from now on (``os.fork``, multiprocessing) dies with it.

    Fork from the main thread: the kernel sends the signal when the forking thread ends.
    """
    os.register_at_fork(before=_before_fork, after_in_child=_after_fork_in_child)


class SignalInbox:
    """Signals as bytes on a pipe (``signal.set_wakeup_fd``), for a loop in ordinary code to read.

    A Python signal handler runs in the main thread between any two bytecodes, also inside
    ``threading.Event.set`` or ``logging``, and a second signal close behind the first (``make``
    forwards the SIGTERM that the process group got) runs a second handler inside the first. A handler
    that takes a lock (``Event.set`` does) can then wait forever for the lock its own thread holds. So
    the handlers installed here do nothing; the C-level handler writes the signal's number to the pipe.
    Create it in the main thread.
    """

    def __init__(self, signals: Iterable[int]) -> None:
        self._read, self._write = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        for sig in signals:
            signal.signal(sig, _do_nothing)
        signal.set_wakeup_fd(self._write, warn_on_full_buffer=False)

    def wait(self, timeout: float | None) -> list[int]:
        """Signals that arrived, waiting up to ``timeout`` seconds (None: until one arrives)."""
        ready, _, _ = select.select([self._read], [], [], timeout)
        if not ready:
            return []
        try:
            return list(os.read(self._read, 4096))
        except BlockingIOError:
            return []

    def set_on(self, event: threading.Event, signals: Iterable[int]) -> None:
        """Set ``event`` from a thread of its own when one of ``signals`` arrives."""
        wanted = set(signals)

        def watch() -> None:
            while not wanted.intersection(self.wait(None)):
                pass
            event.set()

        threading.Thread(target=watch, name="signals", daemon=True).start()


def _do_nothing(signum: int, frame: object) -> None:
    """A handler must be Python code for the wakeup pipe to get the signal; the work is done elsewhere."""


def start_time(pid: int) -> int | None:
    """When the process started (clock ticks after boot), or None if there is no such process (or a zombie)."""
    try:
        stat = (PROC / str(pid) / "stat").read_text()
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None
    fields = stat[stat.rindex(")") + 2 :].split()  # the command name may hold spaces and parentheses
    if fields[0] in ("Z", "X"):
        return None
    return int(fields[19])  # field 22 of proc(5); fields[0] is field 3


def is_same(pid: int, started: int) -> bool:
    """True if ``pid`` is still the process that started at ``started`` (not a later one with its pid)."""
    return start_time(pid) == started


def cmdline(pid: int) -> list[str]:
    """The process's arguments ([] if it is gone or a kernel thread)."""
    try:
        raw = (PROC / str(pid) / "cmdline").read_bytes()
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return []
    return [part.decode("utf-8", "surrogateescape") for part in raw.split(b"\0") if part]


def environ(pid: int) -> dict[str, str]:
    """The environment the process was started with ({} if it cannot be read)."""
    try:
        raw = (PROC / str(pid) / "environ").read_bytes()
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return {}
    env = {}
    for entry in raw.split(b"\0"):
        key, sep, value = entry.partition(b"=")
        if sep:
            env[key.decode("utf-8", "surrogateescape")] = value.decode("utf-8", "surrogateescape")
    return env


def pids() -> list[int]:
    """Every process id on the machine (in this pid namespace)."""
    return [int(p.name) for p in PROC.iterdir() if p.name.isdigit()]


def children(pid: int) -> list[int]:
    """Direct children of ``pid`` (of all its threads)."""
    found: list[int] = []
    with contextlib.suppress(FileNotFoundError, ProcessLookupError):
        for task in (PROC / str(pid) / "task").iterdir():
            with contextlib.suppress(FileNotFoundError, ProcessLookupError):
                found += [int(c) for c in (task / "children").read_text().split()]
    return found


def descendants(pid: int) -> list[int]:
    """Children, grandchildren, … of ``pid``, parents before their children."""
    out: list[int] = []
    todo = children(pid)
    while todo:
        child = todo.pop(0)
        out.append(child)
        todo += children(child)
    return out


def listening_pids(port: int) -> list[int]:
    """Processes holding a TCP socket that listens on ``port`` (any address, IPv4 or IPv6)."""
    inodes = set()
    for table in ("tcp", "tcp6"):
        with contextlib.suppress(FileNotFoundError):
            for line in (PROC / "net" / table).read_text().splitlines()[1:]:
                cols = line.split()
                local, state, inode = cols[1], cols[3], cols[9]
                if state == "0A" and int(local.rsplit(":", 1)[1], 16) == port:  # 0A: LISTEN
                    inodes.add(f"socket:[{inode}]")
    holders: list[int] = []
    if not inodes:
        return holders
    for pid in pids():
        with contextlib.suppress(OSError):
            for fd in (PROC / str(pid) / "fd").iterdir():
                with contextlib.suppress(OSError):
                    if os.readlink(fd) in inodes:
                        holders.append(pid)
                        break
    return holders


def kill_and_reap(procs: Iterable[tuple[int, int]], timeout: float = 5.0) -> list[int]:
    """SIGKILL each (pid, start time) that is still that process; wait until they are dead.

    Returns the pids killed. A pid whose start time differs is another process now and is left alone.
    The dead are left for their parents to reap.
    """
    killed = []
    for pid, started in procs:
        if is_same(pid, started):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
                killed.append(pid)
    deadline = time.monotonic() + timeout
    while any(start_time(pid) is not None for pid in killed) and time.monotonic() < deadline:
        time.sleep(0.05)
    return killed


def main(argv: list[str]) -> None:
    """``python -m scanner_service.station.lifeline PARENT_PID -- PROGRAM ARGS``: die with PARENT_PID, run PROGRAM."""
    if len(argv) < 3 or argv[1] != "--":
        sys.exit("usage: python -m scanner_service.station.lifeline PARENT_PID -- PROGRAM [ARGS]")
    die_with_parent(int(argv[0]))
    # The supervisor's signal dispositions and mask are not the program's: start it with the defaults.
    signal.pthread_sigmask(signal.SIG_SETMASK, set())
    for name in ("SIGPIPE", "SIGXFSZ"):  # Python ignores these; a program expects them at their default
        signal.signal(getattr(signal, name), signal.SIG_DFL)
    os.execvp(argv[2], argv[2:])


if __name__ == "__main__":
    main(sys.argv[1:])
