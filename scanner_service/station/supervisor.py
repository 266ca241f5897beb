"""``scanstation up``: redis-server, workers, watcher and API in one supervised process tree."""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from ocr_models import registry
from scanner_service.archive.db import migrate
from scanner_service.settings import Settings
from scanner_service.station import queue as q
from workers.exec import redis_server

log = logging.getLogger(__name__)

STOP_GRACE = 25.0  # seconds children get to finish their page before they are killed (30 s contract)
MAX_SOCKET_PATH = 100  # Unix socket paths are limited to 107 bytes


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Child:
    role: str
    args: list[str]
    proc: subprocess.Popen[bytes] | None = None
    restarts: list[float] = field(default_factory=list)

    def start(self, env: dict[str, str]) -> None:
        # A session of its own: Ctrl-C reaches only the supervisor, which stops children one way, in order.
        self.proc = subprocess.Popen(self.args, env=env, start_new_session=True)
        log.info("started %s (pid %s)", self.role, self.proc.pid)


def _kill_tree(pid: int) -> None:
    """SIGKILL a process and its descendants (an RQ work horse runs in a process group of its own)."""
    try:
        children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    except OSError:
        children = []
    for child in children:
        _kill_tree(int(child))
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)


class Station:
    """Owns the children; restarts one that dies; stops all on SIGTERM or Ctrl-C."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.stop = threading.Event()
        self.redis_proc: subprocess.Popen[bytes] | None = None
        self.children: list[Child] = []

    def _start_redis(self) -> str:
        s = self.settings
        if s.redis_url:
            return s.redis_url
        sock = s.redis_socket.resolve()
        if len(str(sock)) <= MAX_SOCKET_PATH:
            self.redis_proc = redis_server.start(s.redis_dir, sock)
            url = f"unix://{sock}"
        else:
            port = _free_port()
            self.redis_proc = redis_server.start(s.redis_dir, s.redis_dir / "unused.sock", port=port)
            url = f"redis://127.0.0.1:{port}/0"
        s.redis_url_file.write_text(url + "\n")
        return url

    def run(self) -> int:
        s = self.settings
        registry.check(s.ocr_engine, s.ocr_languages)
        for folder in (s.data, s.inbox, s.spool_dir, s.quarantine_dir, s.archive_dir):
            folder.mkdir(parents=True, exist_ok=True)
        migrate(s.effective_database_url)
        own_redis = not s.redis_url
        url = self._start_redis()
        if own_redis:
            # Our own Redis: no worker can be alive yet, so every "running" job was cut off by a stop.
            q.requeue_abandoned(q.connect(s.model_copy(update={"redis_url": url})), everything=True)
        env = dict(os.environ)
        env.update(
            SCANSTATION_DATA=str(s.data),
            SCANSTATION_INBOX=str(s.inbox),
            SCANSTATION_REDIS_URL=url,
            SCANSTATION_DATABASE_URL=s.effective_database_url,
            SCANSTATION_HOST=s.host,
            SCANSTATION_PORT=str(s.port),
            OMP_THREAD_LIMIT="1",
        )
        cli = [sys.executable, "-m", "scanner_service.cli"]
        self.children = [Child(f"worker-{i + 1}", [*cli, "worker"]) for i in range(s.workers)]
        self.children += [Child("watcher", [*cli, "watch"]), Child("api", [*cli, "api"])]
        for child in self.children:
            child.start(env)
        signal.signal(signal.SIGTERM, lambda *_: self.stop.set())
        signal.signal(signal.SIGINT, lambda *_: self.stop.set())
        print(f"scanstation up: API on http://{s.host}:{s.port}, inbox {s.inbox}, data {s.data}", flush=True)
        try:
            while not self.stop.wait(1.0):
                self._restart_dead(env)
        finally:
            self._shutdown()
        return 0

    def _restart_dead(self, env: dict[str, str]) -> None:
        now = time.monotonic()
        for child in self.children:
            if child.proc is None or child.proc.poll() is None:
                continue
            child.restarts = [t for t in child.restarts if now - t < 60]
            if len(child.restarts) >= 5:
                continue  # crashing in a loop: leave it down rather than spin; healthz will say so
            log.warning("%s exited with %s; restarting", child.role, child.proc.returncode)
            child.restarts.append(now)
            child.start(env)

    def _shutdown(self) -> None:
        """Workers finish their page (RQ warm shutdown); whatever is cut off goes back to the queue."""
        running = [c.proc for c in self.children if c.proc is not None and c.proc.poll() is None]
        for proc in running:
            proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + STOP_GRACE
        for proc in running:
            try:
                proc.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                log.warning("pid %s did not stop in time; killed (its page goes back to the queue)", proc.pid)
                _kill_tree(proc.pid)
                proc.wait()
        if self.redis_proc is not None:
            redis_server.stop(self.redis_proc)
        print("scanstation stopped", flush=True)
