"""批次详情 and 批次 in a real browser, where the review of the two screens found them wrong: quick corrections
one after another while the batch reloads, Enter on a link, and many tabs open on the station at once."""

from __future__ import annotations

import json
from pathlib import Path
from typing import cast

import pytest
from playwright.sync_api import Page, expect

from tests.review_seed import FLAGGED_EVERY, seed_processed_batch
from tests.test_web_review import call, detail, settings_of
from tests.web import PASSWORD, Web, create_user

pytestmark = pytest.mark.slow

# Every answer to GET /api/batches/<id> comes 1.5 s late once window.slowDetail is set: a reload asked for
# while a correction runs then lands after the correction's own answer, as on a busy station.
SLOW_DETAIL = """
(() => {
  const fetch0 = window.fetch;
  window.slowDetail = false;
  window.slowLanded = 0;
  window.fetch = async (url, opts) => {
    const get = !(opts && opts.method && opts.method !== "GET");
    const slow = window.slowDetail && get && /^\\/api\\/batches\\/\\d+$/.test(String(url));
    const reply = await fetch0(url, opts);
    if (slow) { await new Promise((r) => setTimeout(r, 1500)); window.slowLanded++; }
    return reply;
  };
})();
"""


def test_quick_turns_while_the_batch_reloads_are_never_refused_as_someone_elses(web: Web, tmp_path: Path) -> None:
    station, page = web.station, cast(Page, web.page)
    create_user(station, "孙悦", "operator", "C015")
    batch_id = seed_processed_batch(settings_of(station), "C015 连续更正", 3, tmp_path / "seed")
    page.add_init_script(SLOW_DETAIL)
    web.login("孙悦", then=f"/batches/{batch_id}?page=1")
    expect(page.locator("#viewer-title")).to_contain_text("第 1 页")
    page.evaluate("window.slowDetail = true")
    page.keyboard.press("e")  # its answer asks for the batch again: that answer comes late
    expect(page.locator(".toast.ok").last).to_contain_text("人工共加转 90°")
    page.keyboard.press("e")
    expect(page.locator(".toast.ok").last).to_contain_text("人工共加转 180°")
    page.wait_for_function("() => window.slowLanded >= 1")  # the late answer, older than the second turn
    page.keyboard.press("e")
    expect(page.locator(".toast.ok").last).to_contain_text("人工共加转 270°")
    assert not page.locator(".toast.error").count(), page.locator(".toast.error").all_inner_texts()
    turned = next(p for p in detail(station, batch_id)["page_list"] if p["seq"] == 1)
    assert turned["correction"]["turn"] == 270
    web.clean()


def test_enter_on_a_link_follows_it_and_accepts_nothing(web: Web, tmp_path: Path) -> None:
    station, page = web.station, cast(Page, web.page)
    create_user(station, "钱进", "operator", "C015")
    batch_id = seed_processed_batch(settings_of(station), "C015 回车", FLAGGED_EVERY, tmp_path / "seed")
    web.login("钱进", then=f"/batches/{batch_id}")
    expect(page.locator("#viewer-title")).to_contain_text(f"第 {FLAGGED_EVERY} 页")  # flagged blank, open
    page.locator("a.back").focus()
    page.keyboard.press("Enter")
    expect(page).to_have_url(f"{web.base}/batches")
    flagged = next(p for p in detail(station, batch_id)["page_list"] if p["seq"] == FLAGGED_EVERY)
    assert flagged["open_flags"] == ["blank"], "the page was accepted by a key meant for the link"
    web.clean()


def test_seven_tabs_on_the_station_all_open_and_stay_live(web: Web, tmp_path: Path) -> None:
    # A browser keeps at most 6 connections to one host: one live stream per tab held them all, and the
    # seventh tab (an operator opening batches in tabs of their own) never opened at all.
    station, page = web.station, cast(Page, web.page)
    create_user(station, "吴刚", "operator", "C015")
    web.login("吴刚", then="/batches")
    tabs = [page]
    for _ in range(6):
        tab = cast(Page, cast(object, web.context).new_page())  # type: ignore[attr-defined]
        tab.goto(f"{web.base}/batches", timeout=15_000)
        expect(tab.locator("#station-live .value")).to_have_text("已连接")
        tabs.append(tab)
    batch_id = seed_processed_batch(settings_of(station), "C015 第七个标签页", 2, tmp_path / "seed")
    for tab in (tabs[0], tabs[-1]):  # the first and the last tab both show it, without a reload
        expect(tab.locator(f'tr.batch[data-id="{batch_id}"]')).to_be_visible(timeout=15_000)
    web.clean()


# Every event handed to this tab by the shared stream, whatever its kind (ui.js is the module the screen loaded).
COLLECT_EVENTS = """async (kinds) => {
  const ui = await import("/static/ui.js");
  window.handed = [];
  ui.liveEvents((kind, event) => window.handed.push(event.batch_id), kinds, (open) => { window.live = open; });
}"""


def test_a_second_person_logging_in_in_the_same_browser_is_handed_no_event_of_the_first(
    web: Web, tmp_path: Path
) -> None:
    # The shared stream of a browser is opened with the cookie of whoever logged in first; a login as another
    # person (a reader of another fonds, at the same PC) in a new tab leaves that login valid, and the new
    # person's tabs were handed every event of the first person's stream: batches they may not see.
    station, page = web.station, cast(Page, web.page)
    create_user(station, "周操作", "operator", "C015")
    create_user(station, "冯查阅", "reader", "C022")
    web.login("周操作", then="/search")  # a screen that asks nothing more once the browser is the reader's
    page.evaluate(COLLECT_EVENTS, ["batch_state"])
    page.wait_for_function("() => window.live === true")
    tab = cast(Page, cast(object, web.context).new_page())  # type: ignore[attr-defined]
    tab.goto(f"{web.base}/login?next=/search")
    tab.fill("#name", "冯查阅")
    tab.fill("#password", PASSWORD)
    tab.click("#login-submit")
    expect(tab.locator("#top .who")).to_have_text("冯查阅（查阅者 · C022）")
    tab.evaluate(COLLECT_EVENTS, ["batch_state", "page_progress", "page_flagged", "correction"])
    tab.wait_for_function("() => window.live === true")
    batch_id = seed_processed_batch(settings_of(station), "C015 别人的批次", 2, tmp_path / "seed")
    call(station, "POST", f"/api/batches/{batch_id}/discard", json.dumps({"note": "重扫"}).encode())
    page.wait_for_function(f"() => window.handed.includes({batch_id})", timeout=15_000)  # the operator's tab has it
    tab.wait_for_timeout(1000)  # one shared stream hands an event to every tab at once
    assert tab.evaluate("window.handed") == [], "a reader of C022 was handed an operator's batch events"
    web.clean()


def test_a_discarded_batch_shows_its_pages_no_more(web: Web, tmp_path: Path) -> None:
    # Its originals go to quarantine and the station shows its pages no more (409 discarded): the screen says
    # so in place of the pictures, and asks for none of them (each would be a refused request).
    station, page = web.station, cast(Page, web.page)
    create_user(station, "郑明", "operator", "C015")
    batch_id = seed_processed_batch(settings_of(station), "C015 作废", 3, tmp_path / "seed")
    web.login("郑明", then=f"/batches/{batch_id}?page=1")
    expect(page.locator("#viewer-title")).to_contain_text("第 1 页")
    expect(page.locator(".thumb img")).to_have_count(3)
    page.keyboard.press("d")
    page.fill("#discard-note", "扫错了，整批重扫")
    page.locator("#discard-dialog button[type=submit]").click()
    expect(page.locator(".toast.ok").last).to_have_text("批次已作废。")
    expect(page.locator(".thumb img")).to_have_count(0)
    expect(page.locator(".thumb .placeholder")).to_have_text(["已作废"] * 3)
    expect(page.locator(".placeholder").filter(has_text="批次已作废，页面不再显示。")).to_have_count(1)
    page.reload()
    expect(page.locator(".thumb .placeholder")).to_have_text(["已作废"] * 3)
    web.shot("batch-discarded")
    web.clean()
