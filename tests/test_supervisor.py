"""`scanstation up` as a process tree, with real processes: it stops within 30 s however it is stopped
(also under `make`, after API traffic that leaves connections open), nothing of it outlives a supervisor
killed with SIGKILL, a station started later clears what an earlier one left, and no page is lost or
filed twice when Redis, a worker or the whole tree is killed in the middle of a batch."""

from __future__ import annotations

import http.client
import io
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pikepdf
import pytest
import redis
from rq.scheduler import SCHEDULER_KEY_TEMPLATE, RQScheduler

from scanner_service.station import lifeline
from scanner_service.station import queue as q
from tests.conftest import copy_sample

EXE = Path(sys.executable).with_name("scanstation")
CODE = "C015-WS·2013-Y-BGS-0001"
FINAL = {"done", "needs_review", "failed"}
# A small batch: a 200 dpi page, a blank back, a 300 dpi page. Blank pages are left out of the PDF.
PAGES = ["scan_0004.jpg", "scan_0006.jpg", "scan_0001.jpg"]
BLANK = {"scan_0006.jpg"}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _port_free(port: int) -> bool:
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


Proc = tuple[int, int]  # pid, start time: names one process, never a later one with the same pid


def _alive(procs: list[Proc]) -> list[Proc]:
    return [(pid, t) for pid, t in procs if lifeline.is_same(pid, t)]


def _leads_group(pid: int) -> bool:
    """An RQ work horse leads a process group of its own (a process the worker forked otherwise does not)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return int(stat[stat.rindex(")") + 2 :].split()[2]) == pid


def _holders(port: int) -> str:
    """The processes listening on ``port`` as `ss` sees them (for a failure message)."""
    try:
        found = subprocess.run(["ss", "-ltnpH", f"sport = :{port}"], capture_output=True, text=True)
    except FileNotFoundError:
        return "ss not installed"
    return found.stdout.strip() or "no listener"


def _until(what: str, check: Callable[[], Any], timeout: float, every: float = 0.5) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result:
            return result
        assert time.monotonic() < deadline, f"{what}: not within {timeout} s"
        time.sleep(every)


class Up:
    """One station's data folder, and `scanstation up` (or `make run`) running on it."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.data, self.inbox = root / "data", root / "inbox"
        self.port = _free_port()
        self.proc: subprocess.Popen[bytes] | None = None
        self.token = ""
        self.log_path = root / "station.log"
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("SCANSTATION_")}
        self.env.update(
            SCANSTATION_QUIET_SECONDS="1",
            SCANSTATION_POLL_SECONDS="0.5",
            SCANSTATION_RETRY_BACKOFF="1",
            SCANSTATION_JOB_MONITORING_INTERVAL="5",
        )

    def command(self) -> list[str]:
        return [str(EXE), "up", "--data", str(self.data), "--inbox", str(self.inbox), "--port", str(self.port),
                "--workers", "1"]  # fmt: skip

    def start(self, *, via_make: bool = False) -> None:
        """Start the station in a process group of its own (as a shell starts a job) and wait until healthy."""
        if via_make:
            makefile = self.root / "Makefile"
            makefile.write_text("run:\n\t" + " ".join(self.command()) + "\n")
            args = ["make", "-s", "-f", str(makefile), "run"]
        else:
            args = self.command()
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(
                args, env=self.env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
            )
        earlier = self.run_id()
        _until("station healthy", lambda: self.proc_alive() and self.serving(earlier), 120)
        if not self.token:
            out = subprocess.run(
                [str(EXE), "token", "create", "--data", str(self.data), "--role", "admin"],
                capture_output=True, text=True, check=True, env=self.env,
            )  # fmt: skip
            self.token = out.stdout.strip().splitlines()[-1]

    def run_id(self) -> str | None:
        try:
            return str(self.state()["run"])
        except (OSError, ValueError, KeyError):
            return None

    def serving(self, earlier: str | None) -> bool:
        """This station (not one before it) answers on the port, healthy."""
        run = self.run_id()
        if run is None or run == earlier:
            return False
        return self.pid_of("api") in lifeline.listening_pids(self.port) and self.get("/healthz")[0] == 200

    def proc_alive(self) -> bool:
        assert self.proc is not None
        assert self.proc.poll() is None, self.log()
        return True

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def state(self) -> dict[str, Any]:
        return json.loads((self.data / "station.json").read_text())

    def supervisor(self) -> int:
        return int(self.state()["supervisor"]["pid"])

    def pid_of(self, role: str) -> int:
        return next(int(p["pid"]) for p in self.state()["processes"] if p["role"] == role)

    def tree(self) -> list[Proc]:
        """The supervisor and every process under it now (redis, workers, their horses, scheduler, …)."""
        top = self.supervisor()
        pids = [top, *lifeline.descendants(top)]
        return [(p, t) for p in pids if (t := lifeline.start_time(p)) is not None]

    def get(self, path: str) -> tuple[int, bytes]:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=15)
        try:
            conn.request("GET", path, headers={"Authorization": f"Bearer {self.token}"})
            reply = conn.getresponse()
            return reply.status, reply.read()
        except OSError:
            return 0, b""
        finally:
            conn.close()

    def post(self, path: str, body: dict[str, Any]) -> int:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=15)
        try:
            headers = {"Authorization": f"Bearer {self.token}", "Content-Type": "application/json"}
            conn.request("POST", path, body=json.dumps(body), headers=headers)
            reply = conn.getresponse()
            reply.read()
            return reply.status
        finally:
            conn.close()

    def json(self, path: str) -> Any:
        status, body = self.get(path)
        assert status == 200, (path, status, body[:300])
        return json.loads(body)

    def drop(self, name: str, pages: list[str]) -> None:
        """Put a finished batch folder into the inbox, as an operator moves it in."""
        staging = self.root / "staging" / name
        copy_sample(staging, pages)
        (staging / ".done").touch()
        self.inbox.mkdir(parents=True, exist_ok=True)
        os.rename(staging, self.inbox / name)

    def wait_batch(self, check: Callable[[dict[str, Any]], bool], timeout: float) -> dict[str, Any]:
        def ready() -> dict[str, Any] | None:
            batches = self.json("/api/batches") if self.get("/healthz")[0] else []
            return batches[0] if batches and check(batches[0]) else None

        return _until("batch", ready, timeout)

    def wait_mid_batch(self) -> None:
        """Until a work horse is on a page of the batch (the kill comes in the middle of the work)."""
        self.wait_batch(lambda b: b["state"] == "processing", 60)
        worker = self.pid_of("worker-1")
        _until("a work horse running", lambda: [p for p in lifeline.children(worker) if _leads_group(p)], 60, 0.1)

    def stop(self, *, group: bool = False) -> float:
        """SIGTERM (to the whole process group, as a terminal or a service manager does); seconds to exit."""
        assert self.proc is not None
        began = time.monotonic()
        if group:
            os.killpg(self.proc.pid, signal.SIGTERM)
        else:
            self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(60)
        except subprocess.TimeoutExpired:
            pytest.fail(f"no stop within 60 s after SIGTERM:\n{self.log()[-3000:]}")
        return time.monotonic() - began

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            with_tree = self.tree() if (self.data / "station.json").exists() else []
            os.killpg(self.proc.pid, signal.SIGKILL)
            lifeline.kill_and_reap(with_tree)
            self.proc.wait()


@pytest.fixture
def up(tmp_path: Path) -> Iterator[Up]:
    station = Up(tmp_path)
    yield station
    station.kill()


def assert_every_page_once(up: Up, batch: dict[str, Any], pages: list[str]) -> None:
    """The batch ended, with each scanned page in the catalogue once and each non-blank page once in its PDF."""
    assert batch["state"] in ("done", "needs_review"), batch
    detail = up.json(f"/api/batches/{batch['id']}")
    listed = [p["source_file"] for p in detail["page_list"]]
    assert sorted(listed) == sorted(pages), "every page exactly once in the catalogue"
    assert [p["seq"] for p in detail["page_list"]] == list(range(1, len(pages) + 1))
    assert detail["pages"] == {"total": len(pages), "done": len(pages), "blank": len(BLANK & set(pages)), "failed": 0}
    status, pdf = up.get(batch["pdf_url"])
    assert status == 200
    with pikepdf.open(io.BytesIO(pdf)) as doc:
        assert len(doc.pages) == len(set(pages) - BLANK), "every page exactly once in the batch PDF"


def api_traffic(up: Up) -> list[Any]:
    """A session as a reader's browser makes it: searches and Range downloads on keep-alive connections,
    a download not read, an upload cut off half-way. Returns what it leaves open."""
    auth = {"Authorization": f"Bearer {up.token}"}
    item = "/api/items/" + quote(CODE)
    search = http.client.HTTPConnection("127.0.0.1", up.port, timeout=15)
    for words in ("承包", "合同", "土地"):
        search.request("GET", "/api/search?q=" + quote(words), headers=auth)
        reply = search.getresponse()
        assert reply.status == 200 and json.loads(reply.read())["total"] >= 1
    pdf = http.client.HTTPConnection("127.0.0.1", up.port, timeout=15)
    pdf.request("GET", item + "/pdf", headers={**auth, "Range": "bytes=0-1023"})
    reply = pdf.getresponse()
    assert reply.status == 206 and len(reply.read()) == 1024
    pdf.request("GET", item + "/pdf", headers={**auth, "Range": "bytes=1024-"})
    assert pdf.getresponse().status == 206  # the rest of the file, left unread
    upload = socket.create_connection(("127.0.0.1", up.port))
    head = f"PUT {item} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {up.token}\r\n"
    upload.sendall((head + 'Content-Type: application/json\r\nContent-Length: 4096\r\n\r\n{"title":').encode())
    idle = socket.create_connection(("127.0.0.1", up.port))  # connected, nothing sent
    return [search, pdf, upload, idle]


@pytest.mark.slow
def test_sigterm_to_make_run_after_api_traffic_stops_the_station_every_time(up: Up) -> None:
    up.start(via_make=True)
    up.drop(CODE, ["scan_0004.jpg", "scan_0006.jpg"])
    batch = up.wait_batch(lambda b: b["state"] in FINAL, 180)
    assert batch["state"] == "needs_review" and batch["filing"]["proposed"], "a blank back: filed once accepted"
    assert up.post(f"/api/batches/{batch['id']}/accept", {"note": "checked"}) == 200
    batch = up.wait_batch(lambda b: b["archival_code"] == CODE, 60)
    assert batch["state"] == "done"
    for attempt in range(5):
        if attempt:
            up.start(via_make=True)
        tree = up.tree()
        assert len(tree) >= 5, "supervisor, redis-server, worker, watcher, API"
        left_open = api_traffic(up)
        took = up.stop(group=True)  # make and the station both get it; make sends the station another
        assert took < 30, f"stop {attempt + 1} took {took:.1f} s"
        assert up.log().count("scanstation stopped") == attempt + 1, up.log()[-2000:]
        assert _alive(tree) == [], f"stop {attempt + 1}: left running: {_alive(tree)}"
        assert _port_free(up.port), "the API's port is free again"
        assert not (up.data / "station.json").exists(), "a clean stop leaves no process list behind"
        for conn in left_open:
            conn.close()


@pytest.mark.slow
def test_a_killed_supervisor_leaves_nothing_and_the_next_station_clears_leftovers(up: Up) -> None:
    up.start()
    api_env = lifeline.environ(up.pid_of("api"))
    api_cmd = lifeline.cmdline(up.pid_of("api"))
    redis_dir = up.data / "redis"
    tree = up.tree()
    roles = {p["role"] for p in up.state()["processes"]}
    assert roles == {"redis", "worker-1", "watcher", "api", "scheduler"}
    second = subprocess.run([*up.command()[:-4], "--port", str(_free_port())], env=up.env, capture_output=True)
    assert second.returncode == 12 and f"already running on {up.data} (pid {up.supervisor()})" in second.stderr.decode()
    assert up.proc is not None
    os.kill(up.supervisor(), signal.SIGKILL)
    up.proc.wait()
    _until("the whole tree gone", lambda: not _alive(tree), 5, every=0.1)
    # The kernel closes a killed process's sockets as it reaps it; on a loaded machine that can trail
    # the pids' disappearance a little. Who holds the port, if it stays taken, is in the message.
    _until(f"the API's port free ({_holders(up.port)})", lambda: _port_free(up.port), 5, every=0.1)

    # What a station without a lifeline left (issue 9): its API on the port, its redis-server on the socket.
    left = [
        subprocess.Popen(api_cmd, env=api_env, start_new_session=True, stdout=subprocess.DEVNULL),
        subprocess.Popen(
            ["redis-server", "--dir", str(redis_dir), "--unixsocket", str(redis_dir / "redis.sock"), "--port", "0",
             "--appendonly", "yes", "--appendfsync", "always", "--save", "", "--logfile", str(redis_dir / "old.log")],
            start_new_session=True,
        ),
    ]  # fmt: skip
    _until("the leftovers serving", lambda: not _port_free(up.port) and (redis_dir / "redis.sock").exists(), 60)
    up.start()
    assert all(p.poll() is not None for p in left), "the new station cleared what the old one left"
    assert "cleared 1 processes an earlier station left" in up.log()
    assert "left running on" in up.log(), "the old redis-server was found by the folder it serves"
    assert up.get("/healthz")[0] == 200
    assert up.stop() < 30


@pytest.mark.slow
def test_whole_tree_killed_mid_batch_then_up_again_files_every_page_once(up: Up) -> None:
    up.start()
    up.drop("batch", PAGES)
    up.wait_mid_batch()
    tree = up.tree()
    for pid, started in tree:  # all at once, as a power cut or the OOM killer of a container
        if lifeline.is_same(pid, started):
            os.kill(pid, signal.SIGKILL)
    assert up.proc is not None
    up.proc.wait()
    _until("the tree gone", lambda: not _alive(tree), 5, every=0.1)
    up.start()
    batch = up.wait_batch(lambda b: b["state"] in FINAL, 240)
    assert_every_page_once(up, batch, PAGES)
    assert up.stop() < 30


@pytest.mark.slow
def test_redis_killed_mid_batch_is_restarted_and_no_page_is_lost(up: Up) -> None:
    up.start()
    up.drop("batch", PAGES)
    up.wait_mid_batch()
    old = up.pid_of("redis")
    os.kill(old, signal.SIGKILL)
    _until("a new redis-server", lambda: up.pid_of("redis") != old, 30)
    batch = up.wait_batch(lambda b: b["state"] in FINAL, 240)
    assert_every_page_once(up, batch, PAGES)
    assert "redis-server restarted" in up.log()
    assert up.stop() < 30


@pytest.mark.slow
def test_worker_killed_mid_batch_takes_its_horse_and_no_page_is_lost(up: Up) -> None:
    up.start()
    up.drop("batch", PAGES)
    up.wait_mid_batch()
    worker = up.pid_of("worker-1")
    under = [(p, t) for p in lifeline.descendants(worker) if (t := lifeline.start_time(p)) is not None]
    os.kill(worker, signal.SIGKILL)  # the worker only: its horse must not go on with the page alone
    _until("the horse gone with its worker", lambda: not _alive(under), 5, every=0.1)
    batch = up.wait_batch(lambda b: b["state"] in FINAL, 240)
    assert_every_page_once(up, batch, PAGES)
    detail = up.json(f"/api/batches/{batch['id']}")
    assert max(p["attempts"] for p in detail["page_list"]) >= 2, "the page cut off ran again"
    assert "queued again" in up.log()
    assert up.stop() < 30


@pytest.mark.slow
def test_a_killed_scheduler_is_restarted_and_a_cut_off_page_is_still_retried(up: Up) -> None:
    """The scheduler is a small process of its own, not a fork of a worker holding the models; killed,
    it comes back, and the retry of a page cut off (which waits for it) still runs."""
    up.start()
    up.drop("batch", PAGES)
    up.wait_mid_batch()
    forked = [p for p in lifeline.children(up.pid_of("worker-1")) if not _leads_group(p)]
    assert not forked, f"the worker forked a process that is not a work horse: {forked}"
    old = up.pid_of("scheduler")
    os.kill(old, signal.SIGKILL)
    _until("a new scheduler", lambda: up.pid_of("scheduler") != old, 30)
    os.kill(up.pid_of("worker-1"), signal.SIGKILL)  # its page goes back with a back-off: the scheduler queues it
    batch = up.wait_batch(lambda b: b["state"] in FINAL, 240)
    assert_every_page_once(up, batch, PAGES)
    detail = up.json(f"/api/batches/{batch['id']}")
    assert max(p["attempts"] for p in detail["page_list"]) >= 2, "the page cut off ran again"
    assert "scheduler (pid" in up.log() and "restarting" in up.log()
    assert up.stop() < 30


@pytest.mark.slow
def test_a_port_held_by_another_program_is_named_and_nothing_starts(up: Up) -> None:
    with socket.socket() as other:
        other.bind(("127.0.0.1", up.port))
        other.listen()
        out = subprocess.run(up.command(), env=up.env, capture_output=True, text=True, timeout=60)
    assert out.returncode == 12
    assert f"Port {up.port} is in use (pid {os.getpid()}: " in out.stderr, out.stderr[-2000:]
    assert not (up.data / "redis" / "redis.sock").exists(), "no redis-server was started"


def test_the_scheduler_lock_of_a_dead_scheduler_is_freed_and_a_live_ones_kept(redis_conn: redis.Redis) -> None:
    """Retries wait for RQ's scheduler; a lock left by a dead one would hold them for a minute (a new
    scheduler frees it when it starts)."""
    key = RQScheduler.get_locking_key(q.QUEUE_NAME)
    gone = subprocess.Popen(["true"])
    gone.wait()
    for name, pid, freed in (("dead", gone.pid, True), ("alive", os.getpid(), False)):
        redis_conn.set(key, name, ex=60)
        redis_conn.hset(SCHEDULER_KEY_TEMPLATE % name, mapping={"hostname": socket.gethostname(), "pid": pid})
        assert q.release_dead_scheduler_lock(redis_conn) is freed
        assert (redis_conn.get(key) is None) is freed
