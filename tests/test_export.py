"""送档下乡: an export of filed items opened from file:// in Debian's chromium with no network, browsed,
searched by name and landing on the page of the PDF; restricted items left out; the manifest, the verify
page and ``scanstation verify-export``; the ISO image's Chinese names; volumes of a disc's size; the record
of who exported what for whom."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import pytest
import redis
from fastapi.testclient import TestClient
from sqlalchemy import select

from scanner_service.api.app import create_app
from scanner_service.archive.access import Caller
from scanner_service.archive.db import session_scope
from scanner_service.archive.export import ExportSpec, choose_items, disc, export_archive, run, site, verify_export
from scanner_service.archive.export.offline_index import decode_postings, encode_postings, term_hash
from scanner_service.archive.models import AccessRecord, ExportRecord, ExportState, Item, Role
from scanner_service.archive.search import page_tokens
from scanner_service.exceptions import Conflict, NotFound, UnusableInput
from scanner_service.settings import Settings
from tests.test_archive import bearer, scan
from tests.web import SCREENS

CONTRACTS = "C015-WS·2013-Y-BGS-0001"  # open: two land contracts, 罗杰军 on page 1, 孔英 on page 2
CLOSED = "C015-WS·2013-Y-BGS-0002"  # 开放标识 控制: 孟明's contract
OTHER = "C016-WS·2001-Y-0001"  # open, another fonds and year: 范华's contract
CATALOGUE = f"""序号,档号,题名,责任者,日期,页数,开放标识,密级
1,{CONTRACTS},农村土地承包经营权合同（罗杰军、孔英）,东部风景社区村民委员会,20080810,2,开放,
2,{CLOSED},土地承包合同（孟明）,五四路街道村民委员会,19981119,1,控制,
3,{OTHER},土地承包合同（范华）,东部风景社区村民委员会,20010323,1,开放,
"""
ADMIN = Caller(name="张档案员", role=Role.admin)


@pytest.fixture
def filed(station_env: Settings, redis_conn: redis.Redis) -> Settings:
    """Three items filed through the real pipeline (OCR and all) under a catalogue, one of them closed."""
    client = TestClient(create_app(station_env))
    admin = bearer(station_env)
    reply = client.post("/api/catalogue", params={"filename": "目录.csv"}, content=CATALOGUE.encode(), headers=admin)
    assert reply.status_code == 200, reply.text
    reply = client.put("/api/fonds/C015", json={"name": "东部风景社区"}, headers=admin)
    assert reply.status_code == 200, reply.text
    for code, pages in [
        (CONTRACTS, ["scan_0001.jpg", "scan_0003.jpg"]),
        (CLOSED, ["scan_0005.jpg"]),
        (OTHER, ["scan_0004.jpg"]),
    ]:
        assert scan(station_env, redis_conn, code, pages).archival_code == code
    return station_env


def catalogue_of(volume: Path) -> dict[str, Any]:
    text = (volume / "data" / "catalogue.js").read_text(encoding="utf-8")
    return json.loads(text[len("SS.catalogue(") : text.rindex(")")])


# What a page from a disc may load: its own files, and the browser's own pages (chromium's PDF viewer).
LOCAL_SCHEMES = ("file", "data", "blob", "about", "chrome", "chrome-extension", "chrome-untrusted")


def local(url: str) -> bool:
    return url.split(":", 1)[0] in LOCAL_SCHEMES


def offline_page(browser):  # type: ignore[no-untyped-def]
    """A tab with no network at all: any request that is not for a local file is refused and noted, as are
    console errors."""
    context = browser.new_context(viewport={"width": 1366, "height": 768}, locale="zh-CN", offline=True)
    seen: dict[str, list[str]] = {"foreign": [], "errors": []}

    def refuse(route, request) -> None:  # type: ignore[no-untyped-def]
        seen["foreign"].append(request.url)
        route.abort()

    context.route(re.compile(rf"^(?!({'|'.join(LOCAL_SCHEMES)}):).*"), refuse)
    context.on("request", lambda r: None if local(r.url) else seen["foreign"].append(r.url))
    context.on("console", lambda m: seen["errors"].append(m.text) if m.type == "error" else None)
    context.on("weberror", lambda e: seen["errors"].append(f"uncaught: {e.error}"))
    return context, context.new_page(), seen


def search(page, query: str) -> str:  # type: ignore[no-untyped-def]
    """Search as a person does (type, Enter) and wait for this query's answer; the summary line."""
    page.fill("#q", query)
    page.press("#q", "Enter")
    page.wait_for_function(
        "q => { const s = document.querySelector('#search-summary'); return s && s.dataset.q === q && s.dataset.ms; }",
        arg=query,
    )
    return page.inner_text("#search-summary")


# Chromium's PDF viewer: the page number in its toolbar, and the document's page count.
VIEWER_PAGE = """() => {
  const viewer = document.querySelector('pdf-viewer');
  if (!viewer) return null;
  const toolbar = viewer.shadowRoot.querySelector('viewer-toolbar');
  const selector = toolbar.shadowRoot.querySelector('viewer-page-selector');
  if (!selector || !selector.docLength) return null;
  return [Number(selector.shadowRoot.querySelector('input').value), selector.docLength];
}"""


def viewer_page(page, want: tuple[int, int]) -> tuple[int, int] | None:  # type: ignore[no-untyped-def]
    """(page shown, pages) of the PDF open in chromium's own viewer, once it shows ``want`` (the viewer
    opens on page 1 and then moves to the #page asked) or after 15 s, what it shows then."""
    seen = None
    for _ in range(60):
        for frame in page.frames[1:]:
            try:
                found = frame.evaluate(VIEWER_PAGE)
            except Exception:  # the viewer's frame is still loading
                found = None
            if found:
                seen = (found[0], found[1])
        if seen == want:
            break
        page.wait_for_timeout(250)
    return seen


def test_an_export_opened_from_file_with_no_network_finds_a_name_and_opens_its_pdf_on_that_page(
    filed: Settings, tmp_path: Path, browser
) -> None:  # type: ignore[no-untyped-def]
    report = export_archive(filed, ADMIN, ExportSpec(recipient="东部风景社区档案室"), tmp_path / "送档")
    assert report.items == 2 and report.pages == 3
    context, page, seen = offline_page(browser)
    try:
        page.goto((report.folder / "index.html").as_uri())
        page.wait_for_selector("table a[href='#/f/C015']")
        assert "东部风景社区" in page.inner_text("#main")
        assert "找到 1 页，在 1 件档案中" in search(page, "孔英")
        hit = page.locator("#hits .hit").first
        assert CONTRACTS in hit.inner_text() and "第 2 页" in hit.inner_text()
        assert hit.locator("mark").first.inner_text() == "孔英"
        SCREENS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(SCREENS / "export-search-1366x768.png"))
        assert page.evaluate("document.documentElement.scrollWidth - innerWidth") <= 1
        hit.locator("a.open").click()
        page.wait_for_url(re.compile(r".*\.pdf#page=2$"))
        assert viewer_page(page, (2, 2)) == (2, 2)
        page.go_back()
        page.wait_for_selector("#search-summary[data-ms]")
        # Three characters: the pages of both pairs, then the phrase checked in their text.
        assert "找到 1 页" in search(page, "罗杰军") and "第 1 页" in page.inner_text("#hits")
        assert "没有找到" in search(page, "孟明")  # on the closed item only: not on the disc
        assert not seen["foreign"], seen["foreign"]
        assert not seen["errors"], seen["errors"]
    finally:
        context.close()


def test_a_village_browses_fonds_category_year_to_an_item_and_its_pdf(filed: Settings, tmp_path: Path, browser) -> None:  # type: ignore[no-untyped-def]
    report = export_archive(filed, ADMIN, ExportSpec(), tmp_path / "out")
    context, page, seen = offline_page(browser)
    try:
        page.goto((report.folder / "index.html").as_uri())
        page.click("text=C015 东部风景社区")
        page.click("text=WS 文书")
        page.click("text=2013 年度")
        row = page.locator("tbody tr", has_text=CONTRACTS)
        assert "农村土地承包经营权合同（罗杰军、孔英）" in row.inner_text() and "2" in row.inner_text()
        row.locator("a.code").click()
        main = page.inner_text("#main")
        for shown in ("东部风景社区村民委员会", "永久", "PDF 页数"):
            assert shown in main
        page.screenshot(path=str(SCREENS / "export-item-1366x768.png"))
        page.click("a.open-pdf")
        assert viewer_page(page, (1, 2)) == (1, 2)
        assert not seen["foreign"] and not seen["errors"], seen
    finally:
        context.close()


def test_the_page_reads_text_into_tokens_as_the_station_does(filed: Settings, tmp_path: Path, browser) -> None:  # type: ignore[no-untyped-def]
    """The export's search and the station's: the same tokens for the same text (full-width forms, case,
    CJK punctuation, accents), so what the station finds the disc finds too."""
    report = export_archive(filed, ADMIN, ExportSpec(items=(OTHER,)), tmp_path / "out")
    context, page, _ = offline_page(browser)
    samples = [
        "王强，身份证号１１０１０５１９４９１２３１００２Ｘ　2013-05-01",
        "Land Contract No.3 of ＡＢＣ; café — naïve Ｍüller",
        "㐀𠀀 かな 한국어 〇二〇 ①②",
    ]
    try:
        page.goto((report.folder / "index.html").as_uri())
        page.wait_for_selector("#main table")
        for text in samples:
            # Each token with the text it came from (JS counts UTF-16 units where Python counts code points).
            spans = page.evaluate("t => SS.tokens(t).map(x => [x[0], t.slice(x[1], x[2])])", text)
            assert spans == [[token, text[start:end]] for token, start, end in page_tokens(text)]
            term = " ".join(t[0] for t in page_tokens(text)[:2])
            assert page.evaluate("t => SS.termHash(t)", term) == term_hash(term)
        pages = [0, 1, 2, 33, 1000, 40_000, 40_001]
        assert (
            page.evaluate("s => SS.decode(s)", encode_postings(pages))
            == pages
            == decode_postings(encode_postings(pages))
        )
    finally:
        context.close()


def test_a_restricted_item_is_left_out_and_listed_unless_an_archivist_names_it(filed: Settings, tmp_path: Path) -> None:
    report = export_archive(filed, ADMIN, ExportSpec(fonds="C015"), tmp_path / "open")
    assert [(x.archival_code, x.reason_code) for x in report.left_out] == [(CLOSED, "restricted")]
    written = "".join(p.read_text(encoding="utf-8", errors="replace") for p in report.folder.rglob("*.js"))
    names = [p.name for p in report.folder.rglob("*")]
    assert "孟明" not in written and CLOSED not in written and not any("孟明" in n for n in names)
    assert [i["code"] for i in catalogue_of(report.folder)["items"]] == [CONTRACTS]

    # Asking for restricted items is not enough: the archivist names the one that goes.
    asked = export_archive(filed, ADMIN, ExportSpec(include_restricted=True), tmp_path / "all")
    assert CLOSED in [x.archival_code for x in asked.left_out]
    named = export_archive(filed, ADMIN, ExportSpec(items=(CLOSED,), include_restricted=True), tmp_path / "named")
    assert named.items == 1 and not named.left_out
    assert [i["code"] for i in catalogue_of(named.folder)["items"]] == [CLOSED]

    # An archivist of another fonds sees no such item: the export refuses it as unknown.
    other = Caller(name="外宗档案员", role=Role.archivist, fonds_list=("C016",))
    with pytest.raises(NotFound):
        export_archive(filed, other, ExportSpec(items=(CONTRACTS,)), tmp_path / "other")
    assert not (tmp_path / "other").exists()
    assert export_archive(filed, other, ExportSpec(), tmp_path / "c016").items == 1


def test_the_manifest_and_verify_export_name_a_changed_and_a_missing_file(filed: Settings, tmp_path: Path) -> None:
    report = export_archive(filed, ADMIN, ExportSpec(), tmp_path / "out")
    folder = report.folder
    check = subprocess.run(["sha256sum", "-c", "--quiet", "manifest-sha256.txt"], cwd=folder, capture_output=True)
    assert check.returncode == 0, check.stdout
    assert run_cli("verify-export", str(folder)).returncode == 0
    pdf = next(folder.rglob(f"{CONTRACTS}*.pdf"))
    data = bytearray(pdf.read_bytes())
    data[len(data) // 2] ^= 0x01  # one flipped bit in the middle of the PDF
    pdf.write_bytes(bytes(data))
    (folder / "data" / "text" / "t0000.js").unlink()
    out = run_cli("verify-export", str(folder))
    assert out.returncode == 11
    rel = pdf.relative_to(folder).as_posix()
    assert f"CHANGED  {rel}" in out.stdout and "MISSING  data/text/t0000.js" in out.stdout
    assert "1 changed, 1 missing" in out.stdout


def test_the_verify_page_finds_a_damaged_file_in_the_folder_a_person_picks(
    filed: Settings, tmp_path: Path, browser
) -> None:  # type: ignore[no-untyped-def]
    report = export_archive(filed, ADMIN, ExportSpec(), tmp_path / "out")
    context, page, seen = offline_page(browser)
    try:
        page.goto((report.folder / "verify.html").as_uri())
        page.wait_for_selector("#verify-status:has-text('清单中共有')")
        page.set_input_files("#folder", report.folder)
        page.wait_for_selector("#verify-status.ok")
        listed = len(
            json.loads(
                re.sub(
                    r"^SS\.manifest\((.*)\);\s*$",
                    r"\1",
                    (report.folder / "data/manifest.js").read_text(encoding="utf-8"),
                )
            )["files"]
        )
        assert listed > 10 and f"共 {listed} 个文件，{listed} 个完好" in page.inner_text("#verify-status")
        pdf = next(report.folder.rglob(f"{OTHER}*.pdf"))
        pdf.write_bytes(pdf.read_bytes()[:-10])
        page.reload()
        page.wait_for_selector("#verify-status:has-text('清单中共有')")
        page.set_input_files("#folder", report.folder)
        page.wait_for_selector("#verify-status.error")
        assert "1 个已损坏" in page.inner_text("#verify-status")
        assert pdf.relative_to(report.folder).as_posix() in page.inner_text("#verify-problems")
        assert not seen["foreign"] and not seen["errors"], seen
    finally:
        context.close()


def test_the_iso_image_keeps_the_chinese_names(filed: Settings, tmp_path: Path) -> None:
    iso = tmp_path / "村档.iso"
    report = export_archive(filed, ADMIN, ExportSpec(), tmp_path / "out", iso=iso)
    assert report.volumes[0].iso == iso and iso.stat().st_size > report.bytes
    listing = xorriso_files(iso)
    pdfs = sorted(p for p in listing if p.endswith(".pdf"))
    assert pdfs == sorted("/" + p.relative_to(report.folder).as_posix() for p in report.folder.rglob("*.pdf"))
    assert f"/items/C015 东部风景社区/WS 文书/2013/{CONTRACTS} 农村土地承包经营权合同（罗杰军、孔英）.pdf" in pdfs
    assert "/说明.txt" in listing and "/index.html" in listing


def xorriso_files(iso: Path) -> list[str]:
    out = subprocess.run(
        ["xorriso", "-indev", str(iso), "-find", "/", "-type", "f"],
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, "LC_ALL": "C.UTF-8"},
    )
    return [line.strip("'") for line in out.stdout.splitlines() if line.startswith("'")]


def test_an_export_bigger_than_a_disc_is_split_into_volumes_each_browsable_and_searchable(
    filed: Settings, tmp_path: Path, browser
) -> None:  # type: ignore[no-untyped-def]
    with session_scope(filed.effective_database_url) as session:
        chosen = choose_items(session, ADMIN, ExportSpec()).items
        costs = [disc.item_bytes(run._load(filed, session, item)) for item in chosen]
    # A volume with room for the larger of the two items, not for both.
    assert len(costs) == 2 and max(costs) < sum(costs)
    room = max(costs) + 1
    size = int((disc.SITE_BYTES + disc.CATALOGUE_BYTES_PER_ITEM * 2 + room) / (1 - disc.FILE_SYSTEM_SHARE)) + 1
    report = export_archive(filed, ADMIN, ExportSpec(volume_size=size), tmp_path / "discs", iso=tmp_path / "村档.iso")
    assert [v.folder.name for v in report.volumes] == ["disc-1", "disc-2"]
    assert [v.iso.name for v in report.volumes if v.iso] == ["村档-1.iso", "村档-2.iso"]
    for volume in report.volumes:
        assert sum(disc.sectors(p.stat().st_size) for p in volume.folder.rglob("*") if p.is_file()) <= size
        assert volume.iso is not None and volume.iso.stat().st_size <= size
    assert all(r.ok for r in verify_export(report.folder))
    first, second = (catalogue_of(v.folder) for v in report.volumes)
    assert [(i["code"], i["volume"], "pdf" in i) for i in first["items"]] == [(CONTRACTS, 1, True), (OTHER, 2, False)]
    assert [(i["code"], i["volume"], "pdf" in i) for i in second["items"]] == [(CONTRACTS, 1, False), (OTHER, 2, True)]
    assert "第 2 盘：1 件" in (report.volumes[0].folder / "说明.txt").read_text(encoding="utf-8")
    context, page, seen = offline_page(browser)
    try:
        page.goto((report.volumes[1].folder / "index.html").as_uri())
        assert "本盘为第 2 盘（共 2 盘）" in page.inner_text("#volume-note")
        assert "找到 1 页" in search(page, "范华")
        assert "没有找到" in search(page, "孔英")  # on the other volume
        page.goto((report.volumes[1].folder / "index.html").as_uri() + "#/f/C015/WS/2013")
        assert "在第 1 盘" in page.inner_text("#main")
        assert not seen["foreign"] and not seen["errors"], seen
    finally:
        context.close()


def test_an_export_is_recorded_with_who_what_when_and_for_whom(filed: Settings, tmp_path: Path) -> None:
    out = run_cli(
        "export", "--data", str(filed.data), "--to", str(tmp_path / "out"), "--for", "东部风景社区档案室",
        "--by", "张档案员", "--purpose", "送档下乡 2026", "--years", "2001-2013", "-q",
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    assert f"left out  {CLOSED}  (restricted)" in out.stdout and "2 items, 3 pages" in out.stdout
    with session_scope(filed.effective_database_url) as session:
        record = session.scalars(select(ExportRecord)).one()
        assert (record.who, record.recipient, record.state, record.items, record.pages) == (
            "张档案员", "东部风景社区档案室", ExportState.done, 2, 3
        )  # fmt: skip
        assert record.request["years"] == [2001, 2013] and record.left_out[0]["archival_code"] == CLOSED
        lines = session.scalars(select(AccessRecord).where(AccessRecord.action == "export")).all()
        assert sorted(r.archival_code for r in lines) == [CONTRACTS, OTHER]
        assert all(r.who == "张档案员" and "东部风景社区档案室" in (r.purpose or "") for r in lines)
    client = TestClient(create_app(filed))
    log = client.get("/api/access-log", params={"archival_code": OTHER}, headers=bearer(filed, "archivist")).json()
    assert [(line["action"], line["who"]) for line in log] == [("export", "张档案员")], log


def test_an_export_never_writes_over_a_folder_and_a_cut_off_one_leaves_nothing_that_looks_done(
    filed: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    taken = tmp_path / "taken"
    taken.mkdir()
    (taken / "mine.txt").write_text("a villager's file")
    out = run_cli("export", "--data", str(filed.data), "--to", str(taken), "-q")
    assert out.returncode == Conflict.exit_code and "never written over" in out.stderr
    assert [p.name for p in taken.iterdir()] == ["mine.txt"]

    def fail(*_args: object, **_kw: object) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(site, "write_volume", fail)
    with pytest.raises(OSError):
        export_archive(filed, ADMIN, ExportSpec(), tmp_path / "cut")
    assert sorted(p.name for p in tmp_path.iterdir() if "cut" in p.name) == []
    with session_scope(filed.effective_database_url) as session:
        record = session.scalars(select(ExportRecord)).one()
        assert record.state == ExportState.failed and "No space left" in (record.error or "")
        assert not session.scalars(select(AccessRecord).where(AccessRecord.action == "export")).all()


def test_a_pdf_changed_since_filing_is_left_out_and_named_the_rest_goes(filed: Settings, tmp_path: Path) -> None:
    with session_scope(filed.effective_database_url) as session:
        item = session.scalars(select(Item).where(Item.archival_code == OTHER)).one()
        pdf = filed.data / "archive" / item.folder / (item.pdf_name or "")
    data = bytearray(pdf.read_bytes())
    data[100] ^= 0xFF
    pdf.write_bytes(bytes(data))
    report = export_archive(filed, ADMIN, ExportSpec(), tmp_path / "out")
    assert report.items == 1
    assert (OTHER, "pdf_changed") in [(x.archival_code, x.reason_code) for x in report.left_out]
    assert [i["code"] for i in catalogue_of(report.folder)["items"]] == [CONTRACTS]
    assert not list(report.folder.rglob(f"{OTHER}*"))
    assert verify_export(report.folder)[0].ok


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    exe = Path(sys.executable).with_name("scanstation")
    env = {k: v for k, v in os.environ.items() if not k.startswith("SCANSTATION_")}
    if "--data" not in args and args[0] != "verify-export":
        raise AssertionError("give --data")
    return subprocess.run([str(exe), *args], capture_output=True, text=True, env=env, timeout=300)


def test_an_archivist_exports_through_the_api_follows_it_and_downloads_its_disc_image(
    filed: Settings, tmp_path: Path
) -> None:
    client = TestClient(create_app(filed))
    archivist = bearer(filed, "archivist", "C015")
    body = {"fonds": "C015", "recipient": "东部风景社区档案室", "purpose": "送档下乡"}
    reply = client.post("/api/exports", json=body, headers=archivist)
    assert reply.status_code == 202, reply.text
    started = reply.json()
    assert started["state"] in ("running", "done") and started["left_out"][0]["archival_code"] == CLOSED
    export = started
    for _ in range(300):
        export = client.get(f"/api/exports/{started['id']}", headers=archivist).json()
        if export["state"] != "running":
            break
        time.sleep(0.1)
    assert (export["state"], export["items"], export["pages"], export["isos"]) == ("done", 1, 2, 1), export
    assert export["done_bytes"] == export["total_bytes"] > 0
    iso = client.get(f"/api/exports/{started['id']}/iso", headers=archivist)
    assert iso.status_code == 200 and iso.headers["content-type"] == "application/x-iso9660-image"
    (tmp_path / "down.iso").write_bytes(iso.content)
    assert any("孔英" in name for name in xorriso_files(tmp_path / "down.iso"))
    assert [e["id"] for e in client.get("/api/exports", headers=archivist).json()] == [started["id"]]

    # Others: a reader may not export; an archivist of another fonds neither exports C015 nor sees this one.
    reader = bearer(filed, "reader")
    assert client.post("/api/exports", json={}, headers=reader).status_code == 403
    other = bearer(filed, "archivist", "C016")
    assert client.post("/api/exports", json={"fonds": "C015"}, headers=other).status_code == 403
    assert client.get(f"/api/exports/{started['id']}", headers=other).status_code == 404
    assert client.get("/api/exports", headers=other).json() == []
    missing = client.post("/api/exports", json={"items": ["C015-WS·2013-Y-BGS-0099"]}, headers=archivist)
    assert missing.status_code == 404 and "C015-WS·2013-Y-BGS-0099" in missing.json()["detail"]
    assert len(list((filed.data / "exports").iterdir())) == 1  # a refused request leaves no folder behind
    bad = client.post("/api/exports", json={"years": "2013 to 1998"}, headers=archivist)
    assert bad.status_code == 422 and bad.json()["reason"] == "bad_years"


def test_the_export_works_in_firefox_too_from_file_with_no_network(filed: Settings, tmp_path: Path) -> None:
    """Debian's firefox-esr (WebDriver BiDi): browse to an item, search a name, the hit's link to its page."""
    from tests.firefox import FIREFOX, Firefox

    if not Path(FIREFOX).exists():
        pytest.fail(f"Debian's firefox-esr is not at {FIREFOX}: `make test` installs it (apt-get install firefox-esr)")
    report = export_archive(filed, ADMIN, ExportSpec(), tmp_path / "送档")
    firefox = Firefox()
    try:
        firefox.goto((report.folder / "index.html").as_uri() + "#/f/C015/WS/2013")
        row = firefox.wait_for(
            "document.querySelector('#main tbody tr') && document.querySelector('#main tbody tr').innerText"
        )
        assert CONTRACTS in row and "农村土地承包经营权合同（罗杰军、孔英）" in row
        firefox.evaluate(
            "(document.querySelector('#q').value = '孔英', document.querySelector('#search-form').requestSubmit(), 1)"
        )
        summary = firefox.wait_for(
            "document.querySelector('#search-summary[data-ms]') && document.querySelector('#search-summary').innerText"
        )
        assert "找到 1 页，在 1 件档案中" in summary
        href = firefox.evaluate("document.querySelector('#hits a.open').getAttribute('href')")
        assert href.endswith(".pdf#page=2") and (report.folder / unquote(href.split("#")[0])).is_file()
        assert firefox.evaluate("document.querySelector('#hits mark').innerText") == "孔英"
        assert not [url for url in firefox.requests if not url.startswith(("file:", "data:", "blob:", "about:"))]
        assert not firefox.console_errors, firefox.console_errors
        # The watch would have seen a request that left: one made on purpose is seen, and fails.
        assert firefox.evaluate("fetch('http://192.0.2.1/probe').then(() => 'answered', () => 'refused')") == "refused"
        assert "http://192.0.2.1/probe" in firefox.requests
    finally:
        firefox.close()


def test_odd_titles_make_names_every_disc_and_system_takes() -> None:
    assert site.safe_name('合同/附件:第*1?"份"<>|. ') == "合同_附件_第_1_份_"
    assert site.safe_name("  \t\n ") == "_" and site.safe_name("....") == "_"
    long = site.safe_name("村" * 300)
    assert len(long) == site.NAME_LIMIT and len(long.encode()) < 255
    assert site.safe_name("Cafe\u0301") == "Caf\u00e9"  # NFC: one é, as Joliet and Windows expect


def test_an_export_with_nothing_to_export_or_an_iso_that_exists_is_refused_before_anything_is_written(
    filed: Settings, tmp_path: Path
) -> None:
    usb = tmp_path / "usb"
    usb.mkdir()
    with pytest.raises(UnusableInput) as refused:
        export_archive(filed, ADMIN, ExportSpec(items=(CLOSED,)), usb / "none")
    assert refused.value.reason_code == "nothing_to_export" and CLOSED in refused.value.message
    (usb / "村档.iso").write_bytes(b"a disc image burnt last year")
    with pytest.raises(Conflict):
        export_archive(filed, ADMIN, ExportSpec(), usb / "out", iso=usb / "村档.iso")
    with pytest.raises(UnusableInput):
        export_archive(filed, ADMIN, ExportSpec(), usb / "out", iso=usb / "out" / "x.iso")
    assert (usb / "村档.iso").read_bytes() == b"a disc image burnt last year"
    assert sorted(p.name for p in usb.iterdir()) == ["村档.iso"]
    with session_scope(filed.effective_database_url) as session:
        assert not session.scalars(select(ExportRecord)).all()


def test_an_archivist_of_one_fonds_never_sees_an_export_that_left_out_items_of_another(
    filed: Settings, tmp_path: Path
) -> None:
    """An admin's export of C015 lists its closed item as left out: a C016 archivist must not read that."""
    client = TestClient(create_app(filed))
    admin = bearer(filed)
    reply = client.post("/api/exports", json={"items": [CONTRACTS, CLOSED], "iso": False}, headers=admin)
    assert reply.status_code == 202, reply.text
    other = bearer(filed, "archivist", "C016")
    assert client.get(f"/api/exports/{reply.json()['id']}", headers=other).status_code == 404
    assert client.get("/api/exports", headers=other).json() == []
    own = bearer(filed, "archivist", "C015")
    assert client.get(f"/api/exports/{reply.json()['id']}", headers=own).status_code == 200
