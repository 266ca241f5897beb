"""The 批次 board with 1,000 batches in the catalogue: the first rows are drawn within a second of the
navigation, and scrolling down brings the older ones (a station of its own: the rows are seeded)."""

from __future__ import annotations

import json
import time
import urllib.request
from datetime import timedelta

import pytest
from playwright.sync_api import expect
from sqlalchemy.orm import Session

from scanner_service.archive.db import get_engine
from scanner_service.archive.models import BatchState, PageState
from tests.test_api_station import T0, seed_batch
from tests.web import Web, create_user

pytestmark = pytest.mark.slow

BATCHES = 1000
FIRST_ROWS_MS = 1000
PAGE = 50  # rows per request, as batches.js asks


def seed(web: Web) -> None:
    """1,000 finished batches of three pages each, straight into the running station's catalogue (final
    states only: nothing for the watcher's sweep to queue again)."""
    url = f"sqlite:///{(web.station.data / 'catalogue.sqlite3').resolve()}"  # Settings.effective_database_url
    done, failed = PageState.done, PageState.failed
    with Session(get_engine(url)) as session:
        for n in range(1, BATCHES + 1):
            code = f"C015-WS·2013-Y-BGS-{n:04d}"
            at = T0 + timedelta(minutes=n)
            if n % 10 == 0:
                state, pages = (
                    BatchState.needs_review,
                    [(done, ["blank"], at), (done, [], at), (done, ["low_confidence"], at)],
                )
            elif n % 37 == 0:
                state, pages = BatchState.failed, [(failed, ["failed"], at)] * 3
            else:
                state, pages = BatchState.done, [(done, [], at)] * 3
            seed_batch(session, code, state, pages, target=code, created_at=at)
        session.commit()


def test_a_thousand_batches_open_within_a_second_and_more_come_on_scrolling(web: Web) -> None:
    seed(web)
    create_user(web.station, "钱进", "operator", "C015")
    web.login("钱进", then="/batches")
    page = web.page
    rows = page.locator("#batch-rows tr.batch")
    expect(rows).to_have_count(PAGE)

    # The API's page of the board, measured alone (the server warm): well under the page's budget.
    request = urllib.request.Request(
        web.base + f"/api/batches?limit={PAGE}", headers={"Authorization": f"Bearer {web.station.token}"}
    )
    began = time.perf_counter()
    with urllib.request.urlopen(request) as reply:
        assert len(json.loads(reply.read())) == PAGE
    api_ms = (time.perf_counter() - began) * 1000
    assert api_ms < 300, f"GET /api/batches?limit={PAGE} took {api_ms:.0f} ms"

    timings = []
    for _ in range(3):  # a fresh navigation each time; the slowest must be under a second
        web.goto("/batches")
        page.wait_for_function("() => window.batchesFirstRows !== undefined")
        timings.append(page.evaluate("window.batchesFirstRows"))
        expect(rows).to_have_count(PAGE)
    print(f"first rows drawn {', '.join(f'{t:.0f}' for t in timings)} ms after navigation; API {api_ms:.0f} ms")
    assert max(timings) < FIRST_ROWS_MS, timings
    expect(rows.first).to_contain_text(f"C015-WS·2013-Y-BGS-{BATCHES:04d}")  # newest first
    expect(page.locator("#tab-all .count")).to_have_text(str(BATCHES))

    # Scrolling to the bottom brings the next page, and again: newest first, none twice.
    page.locator("#board-more").scroll_into_view_if_needed()
    expect(rows).to_have_count(2 * PAGE)
    page.locator("#board-more").scroll_into_view_if_needed()
    expect(rows).to_have_count(3 * PAGE)
    ids = [int(i) for i in rows.evaluate_all("rows => rows.map(r => r.dataset.id)")]
    assert ids == sorted(ids, reverse=True) and len(set(ids)) == len(ids)
    expect(rows.nth(3 * PAGE - 1)).to_contain_text(f"C015-WS·2013-Y-BGS-{BATCHES - 3 * PAGE + 1:04d}")

    # The 待审核 tab: only those (every tenth), its count from the station.
    page.keyboard.press("3")
    expect(page.locator("#tab-needs_review .count")).to_have_text(str(BATCHES // 10))
    expect(rows).to_have_count(PAGE)
    expect(page.locator("#batch-rows td.state .badge")).to_have_text(["待审核"] * PAGE)
    expect(rows.first.locator("[data-flag=blank]")).to_have_text("空白 1")
    web.shot("batches-many")
    web.fits()
    web.clean()
