"""Pictures of a batch's pages for the review screen (GET /api/batches/{id}/pages/{seq}/image): the master as
scanned and the processed page, in a format a browser shows, scaled for thumbnails, cached by version, and
shown only to the staff who may see the batch."""

from __future__ import annotations

import io
from pathlib import Path

import httpx
import pytest
import redis
from fastapi.testclient import TestClient
from PIL import Image

from scanner_service.api.app import create_app
from scanner_service.archive import previews
from scanner_service.archive.db import session_scope
from scanner_service.archive.layout import Layout
from scanner_service.archive.models import Batch, Page, PageState
from scanner_service.settings import Settings, build_settings
from scanner_service.station.watcher import Watcher
from tests.conftest import SAMPLE
from tests.review_seed import seed_processed_batch
from tests.test_archive import bearer
from tests.test_pipeline import run_queue

pytestmark = pytest.mark.slow

CODE = "C015-WS·2013-Y-BGS-0031"


def _picture(reply: httpx.Response) -> Image.Image:
    assert reply.status_code == 200, reply.text
    im = Image.open(io.BytesIO(reply.content))
    assert reply.headers["content-type"] == {"JPEG": "image/jpeg", "PNG": "image/png"}[str(im.format)]
    return im


def test_page_pictures_as_a_browser_shows_them(station_env: Settings, redis_conn: redis.Redis) -> None:
    # Page 1: a JPEG as scanned; pages 2-3: the two frames of a multi-page TIFF (a text page, a blank back).
    folder = station_env.inbox / CODE
    folder.mkdir()
    (folder / "a.jpg").write_bytes((SAMPLE / "scan_0004.jpg").read_bytes())
    frames = [Image.open(SAMPLE / name).convert("L") for name in ("scan_0003.jpg", "scan_0006.jpg")]
    frames[0].save(folder / "b.tif", save_all=True, append_images=frames[1:], dpi=(300, 300), compression="tiff_lzw")
    (folder / ".done").touch()
    watcher = Watcher(station_env, redis_conn)
    watcher.poll()
    run_queue(redis_conn, watcher)
    with session_scope(station_env.effective_database_url) as session:
        batch_id = session.query(Batch).filter(Batch.name == CODE).one().id
    client = TestClient(create_app(station_env))
    operator = bearer(station_env, "operator", "C015")
    url = f"/api/batches/{batch_id}/pages"
    pages = {p["seq"]: p for p in client.get(f"/api/batches/{batch_id}", headers=operator).json()["page_list"]}
    assert [pages[s]["state"] for s in (1, 2, 3)] == ["done"] * 3

    # The master of a JPEG page is the scanner's own file; a TIFF frame becomes a JPEG, scaled as asked.
    master = client.get(f"{url}/1/image", params={"view": "master"}, headers=operator)
    assert master.content == (SAMPLE / "scan_0004.jpg").read_bytes() and master.headers["content-type"] == "image/jpeg"
    frame = _picture(client.get(f"{url}/2/image", params={"view": "master", "width": 300}, headers=operator))
    assert frame.format == "JPEG" and frame.width == 300
    assert abs(frame.height / frame.width - frames[0].height / frames[0].width) < 0.01
    # The processed text page is bilevel (G4 TIFF in the spool): PNG whole, JPEG as a thumbnail.
    whole = _picture(client.get(f"{url}/2/image", params={"view": "processed"}, headers=operator))
    assert whole.format == "PNG" and whole.mode == "1" and whole.width > 1500
    thumb = client.get(f"{url}/2/image", params={"width": 240, "v": pages[2]["version"]}, headers=operator)
    assert _picture(thumb).size[0] == 240 and _picture(thumb).format == "JPEG"
    assert "immutable" in thumb.headers["cache-control"], "with the page's version in the URL it is kept for good"
    again = client.get(
        f"{url}/2/image", params={"width": 240}, headers={**operator, "If-None-Match": thumb.headers["etag"]}
    )
    assert again.status_code == 304 and "no-cache" in again.headers["cache-control"]
    assert _picture(client.get(f"{url}/3/image", params={"width": 120}, headers=operator)).width == 120

    # The grid's thumbnail of each page was made by the worker as it finished the page: the first request
    # of a batch never opened reads a file (the review grid of a long batch opens in a second).
    previews_dir = Layout.of(station_env).batch_dir(batch_id) / "previews"

    def kept_thumbnails(seq: int) -> list[Path]:
        return sorted(previews_dir.glob(f"{seq:04d}-processed-w{previews.THUMB_WIDTH}-*.jpg"))

    [kept] = kept_thumbnails(1)
    first = client.get(f"{url}/1/image", params={"width": previews.THUMB_WIDTH, "v": 1}, headers=operator)
    assert first.content == kept.read_bytes() and _picture(first).height > _picture(first).width
    assert len(kept_thumbnails(3)) == 1, "the blank back has its thumbnail too"
    # Turned by a person, the page is derived again: its new thumbnail is made with it, the old one is gone.
    turned = client.patch(f"{url}/1", json={"turn": 90}, headers={**operator, "If-Match": '"1"'})
    assert turned.status_code == 200, turned.text
    run_queue(redis_conn, watcher)
    [fresh] = kept_thumbnails(1)
    assert fresh != kept and not kept.exists() and "-p2-" in fresh.name
    after = client.get(f"{url}/1/image", params={"width": previews.THUMB_WIDTH, "v": 2}, headers=operator)
    assert after.content == fresh.read_bytes() and _picture(after).width > _picture(after).height, "turned"

    # Errors: an unknown page, a page being derived again, a reader, an operator of another fonds.
    missing = client.get(f"{url}/9/image", headers=operator)
    assert missing.status_code == 404 and missing.json()["error"] == "not_found"
    assert client.get(f"{url}/2/image", params={"width": 5}, headers=operator).status_code == 422
    assert client.get(f"{url}/2/image", params={"view": "both"}, headers=operator).status_code == 422
    with session_scope(station_env.effective_database_url) as session:
        session.query(Page).filter(Page.batch_id == batch_id, Page.seq == 3).update({"state": PageState.queued})
    busy = client.get(f"{url}/3/image", params={"width": 200}, headers=operator)
    assert busy.status_code == 409 and busy.json()["reason"] == "page_not_ready"
    assert client.get(f"{url}/3/image", params={"view": "master", "width": 200}, headers=operator).status_code == 200
    reader = client.get(f"{url}/1/image", headers=bearer(station_env, "reader", "C015"))
    assert reader.status_code == 403
    other = client.get(f"{url}/1/image", headers=bearer(station_env, "operator", "C016"))
    assert other.status_code == 404, "another fonds' batch is not there for this operator"
    assert client.get(f"{url}/1/image", headers=bearer(station_env, "archivist", "C015")).status_code == 200


# ---- on a batch seeded as the station leaves one (no OCR): damaged files, giant images, the previews' disk --


def _seeded(station_env: Settings, tmp_path: Path, pages: int = 2) -> tuple[TestClient, dict[str, str], int]:
    batch_id = seed_processed_batch(station_env, "C015-WS·2013-Y-BGS-0032", pages, tmp_path / "seed")
    with session_scope(station_env.effective_database_url) as session:
        batch = session.get(Batch, batch_id)
        assert batch is not None
        batch.filing = {"target": "C015-WS·2013-Y-BGS-0032"}
    return TestClient(create_app(station_env)), bearer(station_env, "operator", "C015"), batch_id


def test_a_damaged_processed_page_answers_503_not_500(station_env: Settings, tmp_path: Path) -> None:
    client, operator, batch_id = _seeded(station_env, tmp_path)
    usage = Layout.of(station_env).sidecar(batch_id, 1).with_suffix(".jpg")
    usage.write_bytes(usage.read_bytes()[:300])  # cut short, as a disk error or a copy interrupted leaves it
    # A size the worker did not make ahead: made on request, from the damaged file.
    reply = client.get(f"/api/batches/{batch_id}/pages/1/image", params={"width": 300}, headers=operator)
    assert reply.status_code == 503, reply.text
    assert reply.json()["reason"] == "damaged_file" and "Page 1 of batch" in reply.json()["detail"]


def test_a_processed_page_larger_than_the_limit_is_not_decoded(
    station_env: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The usage image is as large as the station allows masters to be, and no larger: a picture of it
    # is made within the same limit (SCANSTATION_MAX_PIXELS), never past it.
    monkeypatch.setenv("SCANSTATION_MAX_PIXELS", "100000")
    settings = build_settings()
    client, operator, batch_id = _seeded(settings, tmp_path)
    reply = client.get(f"/api/batches/{batch_id}/pages/1/image", params={"width": 300}, headers=operator)
    assert reply.status_code == 409, reply.text
    assert reply.json()["reason"] == "too_large"


def test_previews_of_older_versions_are_removed(station_env: Settings, tmp_path: Path) -> None:
    # Every correction gives a page a new version, so a new thumbnail: the old ones are of no use any more.
    client, operator, batch_id = _seeded(station_env, tmp_path, pages=1)
    previews_dir = Layout.of(station_env).batch_dir(batch_id) / "previews"
    for version in range(1, 6):
        with session_scope(station_env.effective_database_url) as session:
            session.query(Page).filter(Page.batch_id == batch_id).update({"version": version})
        for params in ({"width": 240}, {}, {"view": "master", "width": 240}):
            reply = client.get(f"/api/batches/{batch_id}/pages/1/image", params=params, headers=operator)
            assert reply.status_code == 200, reply.text
    kept = sorted(p.name for p in previews_dir.iterdir())
    assert len(kept) == 2, f"one thumbnail per page and view (a JPEG shown whole is sent as it is): {kept}"
    assert all("-p5-" in name or "-master-" in name for name in kept), kept


def test_a_discarded_batch_shows_no_pictures_and_keeps_none(station_env: Settings, tmp_path: Path) -> None:
    # Discarding a batch (a wrong scan, scanned again) takes its originals to quarantine; its pages went on
    # being shown from the spool, and the thumbnails made of them stayed there for good.
    client, operator, batch_id = _seeded(station_env, tmp_path)
    previews_dir = Layout.of(station_env).batch_dir(batch_id) / "previews"
    url = f"/api/batches/{batch_id}/pages/1/image"
    for made in ({"width": 240}, {"view": "master", "width": 240}):
        assert client.get(url, params=made, headers=operator).status_code == 200
    assert any(previews_dir.iterdir())
    discarded = client.post(f"/api/batches/{batch_id}/discard", json={"note": "重扫"}, headers=operator)
    assert discarded.status_code == 200 and discarded.json()["state"] == "discarded", discarded.text
    assert not previews_dir.exists(), "the discarded batch's thumbnails are removed"
    for params in ({"width": 240}, {}, {"view": "master"}):
        reply = client.get(url, params=params, headers=operator)
        assert reply.status_code == 409, reply.text
        assert reply.json()["reason"] == "discarded"
    assert not previews_dir.exists(), "and none is made again"
