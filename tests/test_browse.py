"""Browsing the archive through the API: the levels 全宗 → 门类 → 年度 with their counts (GET /api/facets),
seen by each caller as GET /api/items lists the items; a page's screen image; the 利用登记 of one item."""

from __future__ import annotations

import io
from typing import Any
from urllib.parse import quote

import pytest
import redis
from fastapi.testclient import TestClient
from PIL import Image

from scanner_service.api.app import create_app
from scanner_service.archive.models import BatchState
from scanner_service.settings import Settings
from tests.test_archive import bearer, scan

FILED = "C015-WS·2013-Y-BGS-0001"
CATALOGUE = """序号,档号,题名,页数,开放标识,密级
1,C015-WS·2013-Y-BGS-0001,村民委员会会议记录,1,开放,
2,C015-WS·2013-Y-BGS-0002,养老保险名册,2,开放,
3,C015-WS·2014-Y-BGS-0001,土地承包合同,3,,
4,C015-KJ·2013-D30-0001,会计凭证,5,开放,秘密
5,C016-WS·2013-Y-0001,村规民约,1,开放,
"""


@pytest.fixture
def archive(station_env: Settings, redis_conn: redis.Redis) -> TestClient:
    """Five catalogue items in two fonds, one of them filed with one page and then found short of a page."""
    client = TestClient(create_app(station_env))
    admin = bearer(station_env)
    reply = client.post("/api/catalogue", params={"filename": "目录.csv"}, content=CATALOGUE.encode(), headers=admin)
    assert reply.status_code == 200, reply.text
    batch = scan(station_env, redis_conn, FILED, ["scan_0001.jpg"])
    assert batch.state == BatchState.done and batch.archival_code == FILED
    reply = client.put(f"/api/items/{quote(FILED)}", json={"pages": 2}, headers=admin)
    assert reply.json()["page_check"] == "missing_pages"
    return client


def levels(client: TestClient, headers: dict[str, str], **params: str) -> dict[str, Any]:
    reply = client.get("/api/facets", params=params, headers=headers)
    assert reply.status_code == 200, reply.text
    body = reply.json()
    return {v["value"]: (v["items"], v["filed"], v["pages_filed"], v["missing_pages"]) for v in body["values"]} | {
        "level": body["level"]
    }


def test_each_level_counts_the_items_under_it(archive: TestClient, station_env: Settings) -> None:
    admin = bearer(station_env)
    assert levels(archive, admin) == {"level": "fonds", "C015": (4, 1, 1, 1), "C016": (1, 0, 0, 0)}
    assert levels(archive, admin, fonds="c015") == {"level": "category", "KJ": (1, 0, 0, 0), "WS": (3, 1, 1, 1)}
    assert levels(archive, admin, fonds="C015", category="WS") == {
        "level": "year",
        "2013": (2, 1, 1, 1),
        "2014": (1, 0, 0, 0),
    }
    assert levels(archive, admin, fonds="C099") == {"level": "category"}
    # The counts are those of the item list under the same level.
    listed = archive.get("/api/items", params={"fonds": "C015", "category": "WS", "year": 2013}, headers=admin)
    assert [i["archival_code"] for i in listed.json()] == [FILED, "C015-WS·2013-Y-BGS-0002"]


def test_a_reader_counts_only_what_a_reader_may_open(archive: TestClient, station_env: Settings) -> None:
    reader = bearer(station_env, "reader", "C015")
    # Not the item not marked 开放 (2014), not the 秘密 one (KJ): as GET /api/items leaves them out.
    assert levels(archive, reader) == {"level": "fonds", "C015": (2, 1, 1, 1)}
    assert levels(archive, reader, fonds="C015") == {"level": "category", "WS": (2, 1, 1, 1)}
    assert levels(archive, reader, fonds="C015", category="WS") == {"level": "year", "2013": (2, 1, 1, 1)}
    assert len(archive.get("/api/items", headers=reader).json()) == 2
    # Staff of the fonds see every item of it, and no other fonds.
    operator = bearer(station_env, "operator", "C015")
    assert levels(archive, operator) == {"level": "fonds", "C015": (4, 1, 1, 1)}
    assert levels(archive, operator, fonds="C016") == {"level": "category"}


def test_a_reader_of_another_fonds_gets_nothing_of_it(archive: TestClient, station_env: Settings) -> None:
    other = bearer(station_env, "reader", "C016")
    assert levels(archive, other) == {"level": "fonds", "C016": (1, 0, 0, 0)}
    assert levels(archive, other, fonds="C015") == {"level": "category"}
    assert levels(archive, other, fonds="C015", category="WS") == {"level": "year"}
    assert archive.get(f"/api/items/{quote(FILED)}/pages/1/preview", headers=other).status_code == 404
    assert archive.get("/api/facets", params={"fonds": "C015"}).status_code == 401


def test_a_page_as_a_browser_shows_it_is_a_jpeg_and_is_logged(archive: TestClient, station_env: Settings) -> None:
    reader = bearer(station_env, "reader", "C015")
    reply = archive.get(f"/api/items/{quote(FILED)}/pages/1/preview", params={"width": 800}, headers=reader)
    assert reply.status_code == 200 and reply.headers["content-type"] == "image/jpeg"
    with Image.open(io.BytesIO(reply.content)) as im:
        assert im.format == "JPEG" and im.width == 800 and im.height > 1000  # an A4 page, upright
    assert archive.get(f"/api/items/{quote(FILED)}/pages/2/preview", headers=reader).status_code == 404
    archivist = bearer(station_env, "archivist", "C015")
    # Either spelling of the 档号 finds the item's lines of the 利用登记, and only its lines.
    log = archive.get("/api/access-log", params={"archival_code": "C015-WS·2013·Y·BGS-0001"}, headers=archivist)
    assert [(r["action"], r["page"], r["role"]) for r in log.json()] == [("page_image", 1, "reader")]
    other_item = archive.get("/api/access-log", params={"archival_code": "C015-WS·2013-Y-BGS-0002"}, headers=archivist)
    assert other_item.json() == []
    assert archive.get("/api/access-log", params={"archival_code": "not a code"}, headers=archivist).json() == []
    other_fonds = bearer(station_env, "archivist", "C016")
    assert archive.get("/api/access-log", params={"archival_code": FILED}, headers=other_fonds).json() == []


def test_a_damaged_page_image_is_said_so_never_a_500(archive: TestClient, station_env: Settings) -> None:
    from sqlalchemy import select

    from scanner_service.archive import filing
    from scanner_service.archive.db import session_scope
    from scanner_service.archive.models import Item

    with session_scope(station_env.effective_database_url) as session:
        item = session.scalars(select(Item).where(Item.archival_code == FILED)).one()
        usage, _ = filing.page_files(station_env, item, item.pages[0])
    usage.write_bytes(b"II*\x00 half a TIFF, the disk failed here")
    admin = bearer(station_env)
    reply = archive.get(f"/api/items/{quote(FILED)}/pages/1/preview", headers=admin)
    assert reply.status_code == 503 and reply.json()["reason"] == "damaged_file", reply.text
    assert "scanstation audit" in reply.json()["detail"]
    log = archive.get("/api/access-log", params={"archival_code": FILED}, headers=admin).json()
    assert log == [], "nothing was seen, so nothing is logged"
