"""``scanstation up``: redis-server, workers, watcher, API and scheduler in one supervised process tree.

Stopping: SIGTERM, SIGINT (Ctrl-C) or SIGHUP stops the station within 30 s: workers get STOP_GRACE
seconds to finish their page (RQ warm shutdown), then whatever still runs is killed and its page goes
back to the queue; Redis is stopped last. A second Ctrl-C a second or more after the first kills at once.

Dying: every child is started through :mod:`scanner_service.station.lifeline`, so a supervisor that dies, even
by SIGKILL, takes its children (and their work horses) with it.

Starting again: ``data/station.lock`` is held while a station runs; ``data/station.json`` lists the
processes of the station (pid, start time, command) and the run's id, which every process of the tree
carries in its environment. A station that starts clears whatever an earlier one left, having checked
that each process is still that one, and says what holds the Redis socket or the port if that is
not one of its own.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import redis

from ocr_models import registry
from scanner_service.archive import filing
from scanner_service.archive.db import migrate
from scanner_service.archive.layout import Layout
from scanner_service.exceptions import StationBusy
from scanner_service.settings import Settings
from scanner_service.station import lifeline
from scanner_service.station import queue as q
from workers.exec import redis_server

log = logging.getLogger(__name__)

STOP_GRACE = {"worker": 20.0, "watcher": 5.0, "api": 5.0, "scheduler": 5.0}  # seconds after SIGTERM before SIGKILL
REDIS_GRACE = 5.0  # then Redis: the whole stop stays under 30 s
FORCE_AFTER = 1.0  # a stop signal this long after the first one kills at once (make sends two together)
STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)
RESTARTS_PER_MINUTE = 5  # a child that dies more often is left down (healthz says so)
MAX_SOCKET_PATH = 100  # Unix socket paths are limited to 107 bytes
RUN_ENV = "SCANSTATION_STATION_RUN"  # the run's id, in the environment of every process of the tree


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _boot_id() -> str:
    """Changes at every boot: pids and start times from another boot mean nothing."""
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        return ""


def _port_in_use(host: str, port: int) -> bool:
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn binds
        try:
            s.bind((host, port))
        except OSError:
            return True
    return False


@dataclass
class Child:
    """One process of the station: its role, its command, and the process now running it."""

    role: str
    args: list[str]
    proc: subprocess.Popen[bytes] | None = None
    started: int | None = None  # start time (clock ticks after boot): with the pid, names the process
    restarts: list[float] = field(default_factory=list)

    @property
    def kind(self) -> str:
        return self.role.split("-")[0]

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def record(self) -> dict[str, Any]:
        assert self.proc is not None
        return {"role": self.role, "pid": self.proc.pid, "start_time": self.started, "command": self.args}


class Station:
    """Owns the children; restarts one that dies; stops all on SIGTERM, Ctrl-C or SIGHUP."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.run_id = uuid.uuid4().hex
        self.redis: Child | None = None  # None with an external Redis
        self.children: list[Child] = []
        self.env: dict[str, str] = {}
        self.url = ""
        self._stop_signals: list[tuple[int, float]] = []
        self._lock_fd: int | None = None
        self._inbox: lifeline.SignalInbox | None = None

    @property
    def state_file(self) -> Path:
        return self.settings.data / "station.json"

    @property
    def lock_file(self) -> Path:
        return self.settings.data / "station.lock"

    # --- start -----------------------------------------------------------------------------------

    def run(self) -> int:
        s = self.settings
        # First of all: from here a stop signal is read by the loop, never acted on in a handler.
        self._inbox = lifeline.SignalInbox([*STOP_SIGNALS, signal.SIGCHLD])
        # What a dying child leaves (a Tesseract its work horse ran) comes to us, not to init: see _end_orphans.
        lifeline.become_subreaper()
        registry.check(s.ocr_engine, s.ocr_languages, s.ocr_runtime)
        for folder in (s.data, s.inbox, Layout.of(s).spool, Layout.of(s).quarantine, Layout.of(s).archive):
            folder.mkdir(parents=True, exist_ok=True)
        self._take_lock()
        try:
            self._clear_leftovers()
            migrate(s.effective_database_url)
            # A filing a crash cut off is finished or undone before anything files again.
            for code, outcome in filing.recover_journals(s):
                log.warning("filing of %s cut off by a crash: %s", code, outcome)
            self._start_redis()
            self.env = self._child_env()
            if self.redis is not None:
                # Our own Redis: no worker can be alive yet, so every "running" job was cut off by a stop.
                q.clear_after_stop(self._connection())
            cli = [sys.executable, "-m", "scanner_service.cli"]
            where = ["--data", str(s.data), "--inbox", str(s.inbox)]  # also tells `ps` which station it is
            self.children = [Child(f"worker-{i + 1}", [*cli, "worker", *where]) for i in range(s.workers)]
            self.children += [
                Child("watcher", [*cli, "watch", *where]),
                Child("api", [*cli, "api", *where]),
                Child("scheduler", [*cli, "scheduler", *where]),
            ]
            for child in self.children:
                self._start(child)
            self._write_state()
            print(f"scanstation up: API on http://{s.host}:{s.port}, inbox {s.inbox}, data {s.data}", flush=True)
            while not self._stop_signals:
                self._take_signals(1.0)
                if not self._stop_signals:
                    self._check_children()
        finally:
            self._shutdown()
            self._release_lock()
        return 0

    def _take_lock(self) -> None:
        fd = os.open(self.lock_file, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            pid = (self._read_state() or {}).get("supervisor", {}).get("pid")
            raise StationBusy(
                f"A station is already running on {self.settings.data}" + (f" (pid {pid})." if pid else "."),
                reason_code="running",
                pid=pid,
            ) from None
        self._lock_fd = fd

    def _release_lock(self) -> None:
        if self._lock_fd is not None:
            os.close(self._lock_fd)  # closing the file releases the lock
            self._lock_fd = None

    def _read_state(self) -> dict[str, Any] | None:
        try:
            state = json.loads(self.state_file.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None
        return state if isinstance(state, dict) else None

    def _write_state(self) -> None:
        me = os.getpid()
        running = [c for c in ([self.redis] if self.redis else []) + self.children if c.proc is not None]
        state = {
            "run": self.run_id,
            "boot": _boot_id(),
            "data": str(self.settings.data),
            "supervisor": {"pid": me, "start_time": lifeline.start_time(me)},
            "processes": [c.record() for c in running],
        }
        tmp = self.state_file.with_name(self.state_file.name + ".tmp")
        tmp.write_text(json.dumps(state, indent=1), encoding="utf-8")
        tmp.replace(self.state_file)

    def _clear_leftovers(self) -> None:
        """Kill what an earlier station on this data folder left running; fail clearly on what is not ours.

        We hold the lock, so no station runs on this folder: a recorded process that is still the one
        recorded (same pid, same start time), or a process carrying a station run's id and this data
        folder in its environment, is a leftover.
        """
        data = str(self.settings.data)
        suspects: dict[int, int] = {}
        state = self._read_state()
        if state and state.get("boot") == _boot_id():
            for entry in state.get("processes", []):
                pid, started = entry.get("pid"), entry.get("start_time")
                if isinstance(pid, int) and isinstance(started, int) and lifeline.is_same(pid, started):
                    suspects[pid] = started
        mine = {os.getpid(), os.getppid()}
        for pid in lifeline.pids():
            if pid in mine:
                continue
            env = lifeline.environ(pid)
            if RUN_ENV in env and env.get("SCANSTATION_DATA") == data:
                started = lifeline.start_time(pid)
                if started is not None:
                    suspects[pid] = started
        for pid in list(suspects):  # and what they started (a work horse, a Tesseract)
            for child in lifeline.descendants(pid):
                started = lifeline.start_time(child)
                if started is not None:
                    suspects.setdefault(child, started)
        killed = lifeline.kill_and_reap(suspects.items())
        if killed:
            log.warning("cleared %d processes an earlier station left running: pids %s", len(killed), killed)
        self._clear_redis_socket()
        # The kernel closes a killed process's sockets a moment after it is gone from the process list.
        deadline = time.monotonic() + (3.0 if killed else 0.0)
        while _port_in_use(self.settings.host, self.settings.port) and time.monotonic() < deadline:
            time.sleep(0.05)
        if _port_in_use(self.settings.host, self.settings.port):
            holders = lifeline.listening_pids(self.settings.port)
            who = "; ".join(f"pid {p}: {' '.join(lifeline.cmdline(p))[:120]}" for p in holders) or "another process"
            raise StationBusy(
                f"Port {self.settings.port} is in use ({who}); stop it or start with --port.",
                reason_code="port_in_use",
                pid=holders[0] if holders else None,
            )

    def _clear_redis_socket(self) -> None:
        """A redis-server still serving our Redis folder is stale (we hold the lock): stop it before a new
        one opens the same append-only file. One serving another folder on our socket path is not ours."""
        if self.settings.redis_url:
            return
        sock = self.settings.redis_socket.resolve()
        found = redis_server.serving(sock)
        if found is None:
            return  # nothing answers: a stale socket file, removed when Redis starts
        pid, folder = found
        started = lifeline.start_time(pid)
        ours = folder.resolve() == self.settings.redis_dir.resolve()
        if ours and started is not None and Path(f"/proc/{pid}/exe").resolve().name.startswith("redis"):
            log.warning("stopping redis-server pid %s, left running on %s by an earlier station", pid, folder)
            lifeline.kill_and_reap([(pid, started)])
            return
        raise StationBusy(
            f"A redis-server (pid {pid}, folder {folder}) answers on {sock}; stop it first.",
            reason_code="redis_in_use",
            pid=pid,
        )

    def _lifeline(self) -> list[str]:
        return [sys.executable, "-m", "scanner_service.station.lifeline", str(os.getpid()), "--"]

    def _child_env(self) -> dict[str, str]:
        s = self.settings
        env = dict(os.environ)
        env.update(
            SCANSTATION_DATA=str(s.data),
            SCANSTATION_INBOX=str(s.inbox),
            SCANSTATION_REDIS_URL=self.url,
            SCANSTATION_DATABASE_URL=s.effective_database_url,
            SCANSTATION_HOST=s.host,
            SCANSTATION_PORT=str(s.port),
            OMP_THREAD_LIMIT="1",
        )
        env[RUN_ENV] = self.run_id
        return env

    def _start_redis(self) -> None:
        s = self.settings
        if s.redis_url:
            self.url = s.redis_url
            return
        sock = s.redis_socket.resolve()
        port = 0
        if len(str(sock)) <= MAX_SOCKET_PATH:
            self.url = f"unix://{sock}"
        else:
            port = _free_port()
            sock = s.redis_dir / "unused.sock"
            self.url = f"redis://127.0.0.1:{port}/0"
        self.redis = Child("redis", ["redis-server", "--dir", str(s.redis_dir), "--unixsocket", str(sock)])
        env = self._child_env()
        started = time.monotonic()
        self.redis.proc = redis_server.start(s.redis_dir, sock, port=port, launcher=self._lifeline(), env=env)
        self.redis.started = lifeline.start_time(self.redis.proc.pid)
        s.redis_url_file.write_text(self.url + "\n")
        log.info("started redis-server (pid %s) in %.1f s", self.redis.proc.pid, time.monotonic() - started)

    def _connection(self) -> redis.Redis:
        return q.connect(self.settings.model_copy(update={"redis_url": self.url}))

    def _start(self, child: Child) -> None:
        # A session of its own: Ctrl-C reaches only the supervisor, which stops children one way, in order.
        child.proc = subprocess.Popen([*self._lifeline(), *child.args], env=self.env, start_new_session=True)
        child.started = lifeline.start_time(child.proc.pid)
        log.info("started %s (pid %s)", child.role, child.proc.pid)

    # --- running ---------------------------------------------------------------------------------

    def _take_signals(self, timeout: float) -> None:
        assert self._inbox is not None
        for sig in self._inbox.wait(timeout):
            if sig in STOP_SIGNALS:
                self._stop_signals.append((sig, time.monotonic()))

    def _forced(self) -> bool:
        """A stop signal came well after the first: the person wants it stopped now."""
        return any(t - self._stop_signals[0][1] >= FORCE_AFTER for _, t in self._stop_signals)

    def _may_restart(self, child: Child) -> bool:
        now = time.monotonic()
        child.restarts = [t for t in child.restarts if now - t < 60]
        if len(child.restarts) >= RESTARTS_PER_MINUTE:
            return False
        child.restarts.append(now)
        return True

    def _end_orphans(self) -> None:
        """Kill and reap processes that came to us when their parent (a child of ours) died."""
        known = {c.proc.pid for c in [*self.children, *([self.redis] if self.redis else [])] if c.proc is not None}
        orphans = [pid for pid in lifeline.children(os.getpid()) if pid not in known]
        if not orphans:
            return
        killed = lifeline.kill_and_reap((pid, t) for pid in orphans if (t := lifeline.start_time(pid)) is not None)
        if killed:
            log.warning("killed %d processes left by a dead child: pids %s", len(killed), killed)
        for pid in orphans:
            with contextlib.suppress(ChildProcessError):
                os.waitpid(pid, os.WNOHANG)

    def _check_children(self) -> None:
        self._end_orphans()
        if self.redis is not None and not self.redis.alive():
            self._restart_redis()
            return
        dead_workers = []
        changed = False
        for child in self.children:
            if child.proc is None or child.alive():
                continue
            if not self._may_restart(child):
                continue  # crashing in a loop: leave it down rather than spin; healthz will say so
            log.warning("%s (pid %s) exited with %s; restarting", child.role, child.proc.pid, child.proc.returncode)
            if child.kind == "worker":
                dead_workers.append(q.worker_name(child.proc.pid))
            elif child.kind == "watcher" and self.redis is not None:
                self._quietly(lambda: self._connection().delete(q.WATCHER_LOCK))  # else the next one waits 60 s
            self._start(child)
            changed = True
        if dead_workers:
            # Their pages run again now, not when their heartbeat runs out a minute later.
            requeued = self._quietly(lambda: q.requeue_jobs_of(self._connection(), dead_workers))
            if requeued:
                log.warning("jobs of the dead worker(s) queued again: %s", ", ".join(requeued))
        if changed:
            self._write_state()

    def _restart_redis(self) -> None:
        """Redis died: start it again (its append-only file keeps the queue), then the workers and the
        watcher, whose state lived in the Redis that died; pages they had in hand go back to the queue."""
        assert self.redis is not None and self.redis.proc is not None
        log.error("redis-server (pid %s) exited with %s", self.redis.proc.pid, self.redis.proc.returncode)
        if not self._may_restart(self.redis):
            log.error("redis-server keeps dying; stopping the station (see %s)", self.settings.redis_dir / "redis.log")
            self._stop_signals.append((signal.SIGTERM, time.monotonic()))
            return
        clients = [c for c in self.children if c.kind in ("worker", "watcher")]
        for child in clients:
            self._kill(child)
        self._start_redis()
        q.clear_after_stop(self._connection())
        for child in clients:
            self._start(child)
        self._write_state()
        log.warning("redis-server restarted; workers and watcher restarted with it")

    @staticmethod
    def _quietly(action: Any) -> Any:
        """Run a repair that needs Redis; if Redis is away now, the watcher's sweep repairs it later."""
        try:
            return action()
        except redis.RedisError as err:
            log.warning("could not reach Redis for a repair: %s", err)
            return None

    # --- stop ------------------------------------------------------------------------------------

    def _kill(self, child: Child) -> None:
        """SIGKILL a child and what it started (an RQ work horse runs in a process group of its own)."""
        if child.proc is None:
            return
        tree = [child.proc.pid, *lifeline.descendants(child.proc.pid)]
        lifeline.kill_and_reap((pid, t) for pid in tree if (t := lifeline.start_time(pid)) is not None)
        with contextlib.suppress(subprocess.TimeoutExpired):
            child.proc.wait(2)

    def _shutdown(self) -> None:
        """Workers finish their page (RQ warm shutdown); whatever is cut off goes back to the queue."""
        if self.redis is None and not self.children:
            return  # nothing was started
        if self._stop_signals:
            log.info("stopping (%s)", signal.Signals(self._stop_signals[0][0]).name)
        began = time.monotonic()
        running = [c for c in self.children if c.alive()]
        for child in running:
            assert child.proc is not None
            child.proc.send_signal(signal.SIGTERM)
        while running and not self._forced():
            now = time.monotonic()
            for child in [c for c in running if not c.alive() or now - began >= STOP_GRACE[c.kind]]:
                running.remove(child)
                if child.alive():
                    log.warning("%s did not stop in time; killed (its page goes back to the queue)", child.role)
                    self._kill(child)
            if running:
                self._take_signals(0.1)
        for child in running:  # forced
            self._kill(child)
        self._end_orphans()  # what a child left (a horse whose worker was killed) dies with it
        if self.redis is not None and self.redis.proc is not None:
            proc = self.redis.proc
            if proc.poll() is None:
                proc.terminate()  # Redis flushes its append-only file and exits
                deadline = time.monotonic() + REDIS_GRACE
                while proc.poll() is None and time.monotonic() < deadline and not self._forced():
                    self._take_signals(0.05)
                if proc.poll() is None:
                    self._kill(self.redis)
        with contextlib.suppress(FileNotFoundError):
            if (self._read_state() or {}).get("run") == self.run_id:
                self.state_file.unlink()
        print(f"scanstation stopped ({time.monotonic() - began:.1f} s)", flush=True)
