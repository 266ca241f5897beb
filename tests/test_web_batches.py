"""The 批次 board in a real browser on a real station: a batch dropped into the inbox appears, its progress
bar fills and its state reaches 待审核 with its flags, all without a reload; the station panel shows the
workers and the disk; the keys work."""

from __future__ import annotations

import json
import os
import re
import shutil
import urllib.request

import pytest
from playwright.sync_api import expect

from tests.conftest import SAMPLE
from tests.test_station import Station
from tests.web import Web, create_user

pytestmark = pytest.mark.slow

NAME = "C015-WS·2013-Y-BGS-0001"
# A land contract, a blank back (flagged 空白: the batch waits for review), two more text pages.
PAGES = ["scan_0001.jpg", "scan_0006.jpg", "scan_0003.jpg", "scan_0008.png"]


def drop(station: Station, name: str, pages: list[str]) -> None:
    """As the scanner does: the folder is written elsewhere, then moved into the inbox in one rename."""
    staging = station.root / "staging" / name
    staging.mkdir(parents=True)
    for page in pages:
        shutil.copy(SAMPLE / page, staging / page)
    (staging / ".done").touch()
    os.rename(staging, station.inbox / name)


def api(station: Station, path: str) -> object:
    request = urllib.request.Request(station.base + path, headers={"Authorization": f"Bearer {station.token}"})
    with urllib.request.urlopen(request) as reply:
        return json.loads(reply.read())


def progress(page, row) -> int:  # type: ignore[no-untyped-def]
    return int(row.locator("[role=progressbar]").get_attribute("aria-valuenow"))


def test_a_batch_dropped_in_shows_up_and_runs_to_review_live_without_a_reload(web: Web) -> None:
    create_user(web.station, "周丽", "operator", "C015")
    page = web.page
    navigations: list[str] = []
    page.on("framenavigated", lambda frame: navigations.append(frame.url) if frame == page.main_frame else None)
    web.login("周丽", then="/batches")
    page.wait_for_url("**/batches")
    expect(page.locator("#board-more")).to_have_text(re.compile("还没有批次"))

    # The station panel: both workers, the queue, the disk as the API says.
    expect(page.locator("#station-workers .value")).to_have_text(re.compile(r"^2 个在线 · \d 个忙$"))
    expect(page.locator("#station-queue .value")).to_have_text(re.compile(r"^\d+ 个等待"))
    expect(page.locator("#station-disk .value")).to_have_text(
        re.compile(r"^剩余 [\d.]+ [KMGT]?B（\d+%）· 约可存 [\d,]+ 页$")
    )
    station = api(web.station, "/api/station")
    assert isinstance(station, dict)
    warning = page.locator("#disk-warning")
    expect(warning).to_be_visible() if station["disk"]["warning"] else expect(warning).to_be_hidden()

    page.evaluate("window.boardMarker = 'no reload'")
    seen = len(navigations)
    drop(web.station, NAME, PAGES)

    row = page.locator("#batch-rows tr.batch", has_text=NAME)
    expect(row).to_be_visible(timeout=30_000)
    assert progress(page, row) < 100
    # Part way: some pages done, not all (two workers, a few seconds a page; the board asks once a second).
    page.wait_for_function(
        """() => { const bar = document.querySelector('#batch-rows tr.batch [role=progressbar]');
                   const v = bar && Number(bar.getAttribute('aria-valuenow')); return v > 0 && v < 100; }""",
        timeout=60_000,
    )
    expect(row.locator("td.speed")).not_to_have_text("")
    web.shot("batches-running")

    expect(row.locator("td.state .badge")).to_have_text("待审核", timeout=180_000)
    expect(row.locator("[role=progressbar]")).to_have_attribute("aria-valuenow", "100")
    expect(row.locator("td.progress-cell")).to_contain_text("4 / 4 页")
    assert page.evaluate("window.boardMarker") == "no reload"
    assert len(navigations) == seen, navigations[seen:]

    # The flags shown are the API's, kind by kind (the blank back at least).
    [batch] = [b for b in api(web.station, "/api/batches") if b["name"] == NAME]  # type: ignore[union-attr]
    assert batch["flags"]["blank"] >= 1
    for kind, count in batch["flags"].items():
        badge = row.locator(f"[data-flag={kind}]")
        if count:
            expect(badge).to_have_attribute("data-count", str(count))
        else:
            expect(badge).to_have_count(0)
    expect(row.locator("[data-flag=blank]")).to_have_text(f"空白 {batch['flags']['blank']}")
    expect(row.locator("td.code")).to_contain_text(NAME)
    expect(page.locator("#tab-needs_review .count")).to_have_text("1")
    web.shot("batches")
    web.fits()

    # Keys: / to the filter, 4 (失败) hides the row, 3 (待审核) shows it, ↓ and Enter open it.
    page.keyboard.press("/")
    expect(page.locator("#tab-all")).to_be_focused()
    page.keyboard.press("4")
    expect(page.locator("#tab-failed")).to_have_attribute("aria-selected", "true")
    expect(page.locator("#board-more")).to_have_text("没有“失败”的批次。")
    expect(row).to_have_count(0)
    page.keyboard.press("ArrowLeft")
    expect(page.locator("#tab-needs_review")).to_be_focused()
    expect(row).to_be_visible()
    assert "state=needs_review" in page.url
    page.keyboard.press("ArrowDown")
    expect(row).to_be_focused()
    assert page.evaluate("window.boardMarker") == "no reload"
    page.keyboard.press("Enter")
    page.wait_for_url(f"**/batches/{batch['id']}")
    web.clean()
