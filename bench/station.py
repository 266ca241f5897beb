"""One end-to-end run of ``scanstation up``: drop a batch into the inbox, time it until it is final."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psutil

from bench.memory import Peak, TreeSampler
from bench.tools import BenchError, kill_tree, venv_command

BATCH_NAME = "C015-WS·2013-Y-BGS-0001"
FINAL_STATES = {"done", "needs_review", "failed"}
HEALTH_TIMEOUT = 120.0
BATCH_TIMEOUT = 30 * 60.0
STOP_TIMEOUT = 60.0
POLL_SECONDS = 0.5
# Would point the station at someone else's Redis or catalogue; the other SCANSTATION_* settings pass through.
ISOLATING = ("SCANSTATION_REDIS_URL", "SCANSTATION_DATABASE_URL", "SCANSTATION_DATA", "SCANSTATION_INBOX")


@dataclass
class StationRun:
    workers: int
    data: Path  # the station's data folder (its catalogue is data/catalogue.sqlite3)
    dropped: float  # time.monotonic() of the drop into the inbox
    dropped_at: datetime  # the same moment on the wall clock, in UTC (the catalogue's clock)
    seconds: float  # from the drop into the inbox to the batch's final state
    batch: dict[str, Any]  # GET /api/batches/{id}
    pdf: Path | None
    memory: Peak  # the worst worker: worker process plus its descendants
    sampler: dict[str, object]
    name: str = BATCH_NAME  # the batch folder dropped
    # What the station says about itself: the last /healthz body and GET /api/station (or why not)
    reports: dict[str, Any] = field(default_factory=dict)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _request(url: str, token: str | None = None) -> tuple[int, bytes]:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    try:
        with urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=30) as reply:
            return int(reply.status), reply.read()
    except urllib.error.HTTPError as err:
        return err.code, err.read()
    except OSError:
        return 0, b""


def drop_batch(pages: list[Path], inbox: Path, name: str) -> float:
    """Copy the pages into a hidden folder with a ``.done`` marker, then rename it in; the drop's time."""
    staging = inbox / f".tmp-{name}"
    staging.mkdir(parents=True)
    for page in pages:
        shutil.copy2(page, staging / page.name)
    (staging / ".done").touch()
    staging.rename(inbox / name)
    return time.monotonic()


def worker_processes(up: psutil.Process) -> list[psutil.Process]:
    """The RQ workers among the children of ``scanstation up`` (their work horses are their children)."""
    found = []
    for child in up.children():
        try:
            if "worker" in child.cmdline():
                found.append(child)
        except psutil.Error:
            continue
    return found


class Station:
    """A ``scanstation up`` process tree on a free port, in fresh data and inbox folders under ``root``."""

    def __init__(self, root: Path, workers: int) -> None:
        self.root = root
        self.workers = workers
        self.data, self.inbox = root / "data", root / "inbox"
        self.base = f"http://127.0.0.1:{_free_port()}"
        self.env = {k: v for k, v in os.environ.items() if k not in ISOLATING}
        self.log_path = root / "station.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self.token = ""
        self.health: dict[str, Any] = {}

    def _log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except FileNotFoundError:
            return "(no log)"

    def start(self) -> psutil.Process:
        self.root.mkdir(parents=True, exist_ok=True)
        port = self.base.rsplit(":", 1)[1]
        cmd = [venv_command("scanstation"), "up", "--data", str(self.data), "--inbox", str(self.inbox)]
        cmd += ["--port", port, "--workers", str(self.workers)]
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(
                cmd, env=self.env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
            )
        return psutil.Process(self.proc.pid)

    def _check_alive(self) -> None:
        assert self.proc is not None
        if self.proc.poll() is not None:
            raise BenchError(f"scanstation up exited with {self.proc.returncode}; its log ends:\n{self._log_tail()}")

    def wait_healthy(self) -> None:
        """Until /healthz is 200 and every worker has registered."""
        deadline = time.monotonic() + HEALTH_TIMEOUT
        while True:
            self._check_alive()
            status, body = _request(self.base + "/healthz")
            if status == 200:
                self.health = json.loads(body)
                if self.health.get("workers", 0) >= self.workers:
                    return
            if time.monotonic() > deadline:
                raise BenchError(
                    f"station with {self.workers} worker(s) not healthy in {HEALTH_TIMEOUT:.0f} s "
                    f"(last /healthz: {status} {body[:200]!r}); its log ends:\n{self._log_tail()}"
                )
            time.sleep(POLL_SECONDS)

    def create_token(self) -> None:
        cmd = [venv_command("scanstation"), "token", "create", "--data", str(self.data), "--role", "admin"]
        done = subprocess.run([*cmd, "--name", "bench"], env=self.env, capture_output=True, text=True, check=False)
        if done.returncode != 0:
            raise BenchError(f"scanstation token create failed: {done.stderr.strip()}")
        self.token = done.stdout.strip().splitlines()[-1]

    def get_json(self, path: str) -> Any:
        status, body = _request(self.base + path, self.token)
        if status != 200:
            raise BenchError(f"GET {path}: HTTP {status} {body[:300]!r}")
        return json.loads(body)

    def wait_final(
        self,
        name: str,
        since: float,
        timeout: float = BATCH_TIMEOUT,
        poll: float = POLL_SECONDS,
        on_poll: Callable[[dict[str, Any]], None] | None = None,
    ) -> dict[str, Any]:
        """Poll /api/batches until the batch called ``name`` is done, needs_review or failed;
        ``on_poll`` sees the batch (as listed) at each poll once it is there."""
        last: dict[str, Any] = {}
        while True:
            self._check_alive()
            last = next((b for b in self.get_json("/api/batches") if b["name"] == name), last)
            if last and on_poll is not None:
                on_poll(last)
            if last.get("state") in FINAL_STATES:
                return last
            if time.monotonic() - since > timeout:
                raise BenchError(
                    f"batch {name!r} not final after {timeout / 60:.0f} min with {self.workers} worker(s) "
                    f"(state {last.get('state', 'not received')}, pages {last.get('pages')}); "
                    f"its log ends:\n{self._log_tail()}"
                )
            time.sleep(poll)

    def reports(self) -> dict[str, Any]:
        """The last /healthz body and GET /api/station, for what the station says it runs (an error
        string instead of the latter if it cannot be read: the benchmark does not need it)."""
        try:
            station: Any = self.get_json("/api/station")
        except BenchError as err:
            station = str(err)
        return {"healthz": self.health, "station": station}

    def download_pdf(self, batch: dict[str, Any], dest: Path) -> Path | None:
        if not batch.get("pdf_url"):
            return None
        status, body = _request(self.base + batch["pdf_url"], self.token)
        if status != 200:
            raise BenchError(f"GET {batch['pdf_url']}: HTTP {status} {body[:300]!r}")
        dest.write_bytes(body)
        return dest

    def stop(self) -> None:
        """SIGTERM to the process group, as Ctrl-C would; SIGKILL to the whole tree if it hangs."""
        if self.proc is None or self.proc.poll() is not None:
            return
        os.killpg(self.proc.pid, signal.SIGTERM)
        try:
            self.proc.wait(STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            print(f"bench: station did not stop in {STOP_TIMEOUT:.0f} s; killing it", file=sys.stderr)
            kill_tree(self.proc.pid)
            self.proc.wait()


def run_station(
    root: Path,
    pages: list[Path],
    workers: int,
    *,
    sampler: TreeSampler | None = None,
    timeout: float = BATCH_TIMEOUT,
    poll: float = POLL_SECONDS,
    on_poll: Callable[[dict[str, Any]], None] | None = None,
    name: str = BATCH_NAME,
) -> StationRun:
    """Start a station, drop ``pages`` as one batch folder called ``name``, wait for its final state,
    fetch its details and PDF.

    ``sampler`` (its ``roots`` are replaced by the station's workers) lets a caller keep the memory
    series; ``timeout``, ``poll`` and ``on_poll`` go to :meth:`Station.wait_final`.
    """
    station = Station(root, workers)
    sampler = sampler or TreeSampler(lambda: [])
    try:
        up = station.start()
        sampler.roots = lambda: worker_processes(up)
        with sampler:
            station.wait_healthy()
            station.create_token()
            reports = station.reports()
            dropped = drop_batch(pages, station.inbox, name)
            dropped_at = datetime.now(UTC)
            final = station.wait_final(name, dropped, timeout, poll, on_poll)
            seconds = time.monotonic() - dropped
        batch = station.get_json(f"/api/batches/{final['id']}")
        pdf = station.download_pdf(batch, root / f"station-w{workers}.pdf")
    finally:
        station.stop()
    return StationRun(
        workers, station.data, dropped, dropped_at, seconds, batch, pdf, sampler.max_peak(), sampler.summary(),
        name, reports,
    )  # fmt: skip
