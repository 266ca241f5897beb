"""The whole station as processes: `scanstation up`, a worker killed mid-page, SIGTERM within 30 s."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from tests.conftest import REAL, SAMPLE

pytestmark = pytest.mark.slow


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _get(url: str, token: str | None = None) -> tuple[int, bytes]:
    req = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"} if token else {})
    try:
        with urllib.request.urlopen(req, timeout=10) as reply:
            return reply.status, reply.read()
    except urllib.error.HTTPError as err:
        return err.code, err.read()
    except OSError:
        return 0, b""


def _children(pid: int) -> list[int]:
    out = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True).stdout
    return [int(x) for x in out.split()]


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except FileNotFoundError:
        return ""


class Station:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.data, self.inbox = root / "data", root / "inbox"
        self.port = _free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen[bytes] | None = None
        self.token = ""

    def start(self, workers: int = 2) -> None:
        env = {k: v for k, v in os.environ.items() if not k.startswith("SCANSTATION_")}
        env.update(SCANSTATION_QUIET_SECONDS="2", SCANSTATION_JOB_MONITORING_INTERVAL="5")
        exe = Path(sys.executable).with_name("scanstation")
        self.log = open(self.root / "station.log", "ab")  # noqa: SIM115 - open for the station's lifetime
        self.proc = subprocess.Popen(
            [str(exe), "up", "--data", str(self.data), "--inbox", str(self.inbox), "--port", str(self.port),
             "--workers", str(workers)],
            env=env, stdout=self.log, stderr=subprocess.STDOUT,
        )  # fmt: skip
        deadline = time.monotonic() + 90
        while _get(self.base + "/healthz")[0] != 200:
            assert self.proc.poll() is None, (self.root / "station.log").read_text()
            assert time.monotonic() < deadline, "station not healthy in 90 s"
            time.sleep(0.5)
        if not self.token:
            out = subprocess.run(
                [str(exe), "token", "create", "--data", str(self.data), "--role", "admin"],
                capture_output=True, text=True, check=True, env=env,
            )  # fmt: skip
            self.token = out.stdout.strip().splitlines()[-1]

    def batches(self) -> list[dict]:  # type: ignore[type-arg]
        status, body = _get(self.base + "/api/batches", self.token)
        assert status == 200
        return json.loads(body)  # type: ignore[no-any-return]

    def wait(self, predicate, timeout: float) -> list[dict]:  # type: ignore[no-untyped-def, type-arg]
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            batches = self.batches()
            if predicate(batches):
                return batches
            time.sleep(1)
        raise AssertionError(f"not reached in {timeout} s: {self.batches()}")

    def stop(self) -> float:
        assert self.proc is not None
        began = time.monotonic()
        self.proc.send_signal(signal.SIGTERM)
        self.proc.wait(60)
        return time.monotonic() - began

    def workers(self) -> list[int]:
        assert self.proc is not None
        return [p for p in _children(self.proc.pid) if "scanner_service.cli worker " in _cmdline(p)]


FINAL = {"done", "needs_review", "failed"}


@pytest.fixture
def station(tmp_path: Path):  # type: ignore[no-untyped-def]
    st = Station(tmp_path)
    yield st
    if st.proc is not None and st.proc.poll() is None:
        st.proc.kill()
        st.proc.wait()
        for pid in subprocess.run(["pgrep", "-f", str(st.data)], capture_output=True, text=True).stdout.split():
            os.kill(int(pid), signal.SIGKILL)


def test_station_end_to_end_with_bad_inputs_and_clean_stop(station: Station, tmp_path: Path) -> None:
    station.start()
    staging = tmp_path / "staging" / "C015-WS·2013-Y-BGS-0001"
    staging.mkdir(parents=True)
    for f in ["scan_0008.png", "scan_0006.jpg", "scan_0002.jpg"]:  # upright, a blank back, upside down
        shutil.copy(SAMPLE / f, staging / f)
    (staging / ".done").touch()
    os.rename(staging, station.inbox / staging.name)  # as an operator moves a finished folder in
    shutil.copy(REAL / "invalid.pdf", station.inbox / "invalid.pdf")
    shutil.copy(REAL / "hugemono.pdf", station.inbox / "hugemono.pdf")
    (station.inbox / "empty.tif").write_bytes(b"")
    (station.inbox / "notes.txt").write_text("备注")
    (station.inbox / "link.jpg").symlink_to(SAMPLE / "scan_0001.jpg")
    batches = station.wait(lambda bs: len(bs) == 6 and all(b["state"] in FINAL for b in bs), 300)
    by_name = {b["name"]: b for b in batches}
    good = by_name.pop("C015-WS·2013-Y-BGS-0001")
    assert good["state"] in ("done", "needs_review")
    assert good["pages"] == {"total": 3, "done": 3, "blank": 1, "failed": 0}
    # What the stages did to each page, as the API reports it, against the sample's truth.
    truth = {e["file"]: e for e in json.loads((SAMPLE.parent / "truth.json").read_text(encoding="utf-8"))}
    detail = json.loads(_get(f"{station.base}/api/batches/{good['id']}", station.token)[1])
    for page in detail["page_list"]:
        want = truth[page["source_file"]]
        assert page["details"]["turn"] == want["turn_deg"], page
        assert abs(page["details"]["skew_deg"] - want["skew_deg"]) < 0.1, page
        assert ("blank" in page["flags"]) == want["blank"], page
    for name, batch in by_name.items():
        assert batch["state"] == "failed" and batch["error"], name
    assert _get(station.base + "/healthz")[0] == 200
    status, pdf = _get(station.base + good["pdf_url"], station.token)
    assert status == 200 and pdf.startswith(b"%PDF") and b"pdfaid:part" in pdf
    assert SAMPLE.joinpath("scan_0001.jpg").exists()
    assert station.stop() < 30
    assert _get(station.base + "/healthz")[0] == 0, "nothing answers after the stop"


def test_worker_killed_mid_page_does_not_strand_it(station: Station) -> None:
    station.start(workers=1)
    folder = station.inbox / "batch"
    folder.mkdir()
    for f in ["scan_0008.png", "scan_0003.jpg", "scan_0005.jpg"]:
        shutil.copy(SAMPLE / f, folder / f)
    (folder / ".done").touch()
    deadline = time.monotonic() + 60
    while True:
        bs = station.batches()
        if bs and bs[0]["state"] == "processing":
            break
        assert time.monotonic() < deadline
        time.sleep(0.2)
    time.sleep(1.0)  # inside Tesseract now
    [worker] = station.workers()
    horses = _children(worker)
    assert horses, "the worker should be running a page in its work horse"
    for pid in [worker, *horses]:  # the worker and the page it was working on
        os.kill(pid, signal.SIGKILL)
    [batch] = station.wait(lambda bs: bs[0]["state"] in FINAL, 300)
    assert batch["state"] in ("done", "needs_review")
    assert batch["pages"]["done"] == 3 and batch["pages"]["failed"] == 0
    detail = json.loads(_get(f"{station.base}/api/batches/{batch['id']}", station.token)[1])
    assert max(p["attempts"] for p in detail["page_list"]) >= 2, "the page cut off was run again"
    assert station.stop() < 30


def test_stop_and_restart_loses_no_queued_page(station: Station) -> None:
    station.start(workers=1)
    folder = station.inbox / "batch"
    folder.mkdir()
    for f in ["scan_0008.png", "scan_0003.jpg", "scan_0005.jpg", "scan_0001.jpg"]:
        shutil.copy(SAMPLE / f, folder / f)
    (folder / ".done").touch()
    station.wait(lambda bs: bool(bs) and bs[0]["state"] == "processing", 60)
    assert station.stop() < 30
    station.start(workers=2)
    [batch] = station.wait(lambda bs: bs[0]["state"] in FINAL, 300)
    assert batch["state"] in ("done", "needs_review") and batch["pages"]["done"] == 4
    assert station.stop() < 30
