"""移交 and 接收: a fonds handed over as a BagIt bag by one station and received by another (its own data
folder and catalogue): the same items, pages, order, masters, PDFs and history, and search finds the same
names; a bag with one flipped byte or a missing file is refused with that file named and nothing filed;
receiving twice files nothing twice; a conflict with what is filed already refuses the bag; a receipt cut
off midway leaves no half-filed item and is finished by receiving again."""

from __future__ import annotations

import csv
import json
import os
import shutil
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import bagit
import pytest
import redis
from fastapi.testclient import TestClient
from sqlalchemy import delete, func, select, update

from scanner_service.api.app import create_app
from scanner_service.archive.access import Caller
from scanner_service.archive.catalogue_import import read_catalogue
from scanner_service.archive.db import migrate, session_scope
from scanner_service.archive.filing import steps
from scanner_service.archive.models import AccessRecord, ArchiveFile, Correction, Event, FileKind, Item, ItemPage, Role
from scanner_service.archive.transfer import BagInvalid, receive_bag
from scanner_service.settings import Settings, build_settings
from tests.test_archive import bearer, scan

CONTRACTS = "C015-WS·2013-Y-BGS-0001"  # open: two land contracts, 罗杰军 and 孔英
CLOSED = "C015-WS·2013-Y-BGS-0002"  # 开放标识 控制: 孟明's contract; a transfer takes it too
OTHER = "C016-WS·2001-Y-0001"  # another fonds: not in C015's bag
UNSCANNED = "C015-WS·2013-Y-BGS-0003"  # in the catalogue, no pages: left out, said why
CATALOGUE = f"""序号,档号,题名,责任者,日期,页数,开放标识,密级
1,{CONTRACTS},农村土地承包经营权合同（罗杰军、孔英）,东部风景社区村民委员会,20080810,2,开放,
2,{CLOSED},土地承包合同（孟明）,五四路街道村民委员会,19981119,1,控制,秘密
3,{OTHER},土地承包合同（范华）,东部风景社区村民委员会,20010323,1,开放,
4,{UNSCANNED},土地承包合同（未扫描）,东部风景社区村民委员会,20130101,1,开放,
"""
NOTE = "第二页为补签页，已核对"


@pytest.fixture
def sender(station_env: Settings, redis_conn: redis.Redis) -> Settings:
    """Station A: items filed through the real pipeline, one of them reordered and its page noted by a person."""
    client = TestClient(create_app(station_env))
    admin = bearer(station_env)
    reply = client.post("/api/catalogue", params={"filename": "目录.csv"}, content=CATALOGUE.encode(), headers=admin)
    assert reply.status_code == 200, reply.text
    assert client.put("/api/fonds/C015", json={"name": "东部风景社区"}, headers=admin).status_code == 200
    for code, pages in [
        (CONTRACTS, ["scan_0001.jpg", "scan_0003.jpg"]),
        (CLOSED, ["scan_0005.jpg"]),
        (OTHER, ["scan_0004.jpg"]),
    ]:
        assert scan(station_env, redis_conn, code, pages).archival_code == code
    url = f"/api/items/{CONTRACTS}"
    reply = client.post(f"{url}/order", json={"pages": [2, 1], "note": "按签订顺序"}, headers=admin)
    assert reply.status_code == 200, reply.text
    reply = client.patch(f"{url}/pages/1", json={"note": NOTE}, headers=admin)
    assert reply.status_code == 200, reply.text
    return station_env


def second_station(root: Path, database_url: str | None = None) -> Settings:
    """Station B (the county archive): a data folder and catalogue of its own."""
    (root / "inbox").mkdir(parents=True)
    settings = build_settings(data=root / "data", inbox=root / "inbox", database_url=database_url)
    migrate(settings.effective_database_url)
    return settings


def cli(settings: Settings, *args: str) -> subprocess.CompletedProcess[str]:
    exe = Path(sys.executable).with_name("scanstation")
    env = {k: v for k, v in os.environ.items() if not k.startswith("SCANSTATION_")}
    quiet = ["-q"] if args[0] in ("transfer", "receive") else []
    command = [str(exe), args[0], "--data", str(settings.data), "--inbox", str(settings.inbox), *quiet, *args[1:]]
    return subprocess.run(command, capture_output=True, text=True, env=env, timeout=300)


def transfer(sender: Settings, bag: Path) -> subprocess.CompletedProcess[str]:
    done = cli(sender, "transfer", "--fonds", "C015", "--to", str(bag), "--for", "区档案馆", "--by", "王移交")
    assert done.returncode == 0, done.stderr
    return done


def holdings(settings: Settings) -> dict[str, dict[str, Any]]:
    """Each filed item as a person compares it: description, PDF, pages in order with their masters' SHA-256
    and text, the person's notes, the history's actions."""
    out = {}
    with session_scope(settings.effective_database_url) as session:
        for item in session.scalars(select(Item).where(Item.pages_filed > 0).order_by(Item.code_key)):
            masters = {
                row.path: row.sha256
                for row in session.scalars(
                    select(ArchiveFile).where(ArchiveFile.item_id == item.id, ArchiveFile.kind == FileKind.master)
                )
            }
            history = session.scalars(select(Correction.action).where(Correction.item_id == item.id)).all()
            out[item.archival_code] = {
                "description": (item.title, item.author, item.date_text, item.open_status, item.classification),
                "pdf": (item.pdf_name, item.pdf_sha256, item.pdf_size),
                "pages": [
                    (
                        row.serial,
                        row.master_name,
                        masters[f"{item.folder}/{row.master_name}"],
                        row.text,
                        (row.correction or {}).get("note"),
                    )
                    for row in item.pages
                ],
                "history": sorted(history),
            }
    return out


def found(settings: Settings, query: str) -> list[tuple[str, int]]:
    reply = TestClient(create_app(settings)).get("/api/search", params={"q": query}, headers=bearer(settings))
    assert reply.status_code == 200, reply.text
    return [(hit["archival_code"], hit["page"]) for hit in reply.json()["hits"]]


def count(settings: Settings, *models: Any) -> tuple[int, ...]:
    with session_scope(settings.effective_database_url) as session:
        return tuple(int(session.scalar(select(func.count()).select_from(m)) or 0) for m in models)


def test_a_bag_from_one_station_is_received_by_another_as_it_was(sender: Settings, tmp_path: Path) -> None:
    bag = tmp_path / "移交-C015"
    done = transfer(sender, bag)
    assert "2 items" in done.stdout and f"left out  {UNSCANNED}  (no_pages)" in done.stdout, done.stdout

    # A valid BagIt bag, as any BagIt tool reads it, saying who sent it to whom.
    made = bagit.Bag(str(bag))
    made.validate()
    assert made.info["Source-Organization"] == "东部风景社区"
    assert made.info["Transfer-To"] == "区档案馆" and made.info["Contact-Name"] == "王移交"
    # The 归档文件目录, CSV and XLSX, as the catalogue import reads them: C015's two filed items, not C016's.
    for name in ("归档文件目录.csv", "归档文件目录.xlsx"):
        rows = read_catalogue(bag / "data" / name).rows
        assert [(str(r.code), r.title, r.pages) for r in rows] == [
            (CONTRACTS, "农村土地承包经营权合同（罗杰军、孔英）", 2),
            (CLOSED, "土地承包合同（孟明）", 1),
        ], name
        assert rows[1].classification == "秘密" and rows[1].open_status == "控制"
    with open(bag / "data" / "归档文件目录.csv", encoding="utf-8-sig", newline="") as handle:
        assert next(csv.reader(handle))[:5] == ["序号", "档号", "文号", "责任者", "题名"]
    folder = bag / "data" / "archive" / "C015" / "WS" / "2013" / CONTRACTS
    xml = ET.parse(folder / "item.xml").getroot()
    assert xml.findtext("档号") == CONTRACTS and xml.findtext("题名") == "农村土地承包经营权合同（罗杰军、孔英）"
    assert [p.get("原件") for p in xml.iter("页面")] == [f"{CONTRACTS}-0001.jpg", f"{CONTRACTS}-0002.jpg"]
    assert (folder / "item.json").is_file() and (folder / f"{CONTRACTS}.pdf").is_file()
    assert not any("C016" in str(p) for p in bag.rglob("*"))
    with session_scope(sender.effective_database_url) as session:
        logged = session.scalars(select(AccessRecord.archival_code).where(AccessRecord.action == "transfer")).all()
    assert sorted(logged) == [CONTRACTS, CLOSED]  # in the 利用登记

    county = second_station(tmp_path / "county")
    # The county archive imported an older list first: the item is in its catalogue, with no pages.
    older = f"序号,档号,题名,页数\n1,{CONTRACTS},旧题名,2\n"
    reply = TestClient(create_app(county)).post(
        "/api/catalogue", params={"filename": "旧目录.csv"}, content=older.encode(), headers=bearer(county)
    )
    assert reply.status_code == 200, reply.text
    received = cli(county, "receive", str(bag), "--by", "李接收")
    assert received.returncode == 0, received.stderr
    assert "2 items filed" in received.stdout, received.stdout

    a, b = holdings(sender), holdings(county)
    assert sorted(b) == [CONTRACTS, CLOSED]
    for code in b:
        assert b[code] == a[code], code  # same description, PDF, pages in order, masters, text, notes, history
    assert b[CONTRACTS]["pages"][0][4] == NOTE and "order" in b[CONTRACTS]["history"]
    for name in ("孔英", "罗杰军"):
        assert found(county, name) == [hit for hit in found(sender, name) if hit[0] == CONTRACTS] != []
    # The received station's own files work: the page image the review screen shows, and its audit is clean.
    client = TestClient(create_app(county))
    image = client.get(f"/api/items/{CONTRACTS}/pages/2/image", headers=bearer(county))
    assert image.status_code == 200 and image.headers["content-type"].startswith("image/")
    audit = cli(county, "audit")
    assert audit.returncode == 0 and "UNTRACKED" not in audit.stdout, audit.stdout + audit.stderr
    with session_scope(county.effective_database_url) as session:
        event = session.scalars(select(Event).where(Event.kind == "item_filed")).first()
        assert event is not None and event.detail["mode"] == "received" and event.detail["from"] == "东部风景社区"

    # Received again: nothing filed twice.
    before = count(county, Item, ArchiveFile, Event, Correction)
    again = cli(county, "receive", str(bag))
    assert again.returncode == 0, again.stderr
    assert "0 items filed" in again.stdout and "2 already here" in again.stdout, again.stdout
    assert count(county, Item, ArchiveFile, Event, Correction) == before
    assert holdings(county) == b


def flip_byte(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01
    path.write_bytes(bytes(data))


def test_a_bag_with_one_flipped_byte_or_a_missing_file_is_refused_with_that_file_named(
    sender: Settings, tmp_path: Path
) -> None:
    bag = tmp_path / "bag"
    transfer(sender, bag)
    rel = f"data/archive/C015/WS/2013/{CONTRACTS}/{CONTRACTS}-0002.jpg"
    flip_byte(bag / rel)
    county = second_station(tmp_path / "county")
    refused = cli(county, "receive", str(bag))
    assert refused.returncode == 17, refused.stdout + refused.stderr
    assert f"CHANGED  {rel}" in refused.stderr and "nothing was filed" in refused.stderr
    assert count(county, Item, ArchiveFile) == (0, 0)
    assert not (county.data / "archive" / "C015").exists()

    flip_byte(bag / rel)  # back as it was; now a file goes missing and another is cut short
    gone = f"data/archive/C015/WS/2013/{CLOSED}/{CLOSED}.pdf"
    (bag / gone).unlink()
    short = bag / "data" / "归档文件目录.xlsx"
    short.write_bytes(short.read_bytes()[:100])
    refused = cli(county, "receive", str(bag))
    assert refused.returncode == 17, refused.stderr
    assert f"MISSING  {gone}" in refused.stderr and "CHANGED  data/归档文件目录.xlsx" in refused.stderr, refused.stderr
    assert f"CHANGED  {rel}" not in refused.stderr
    assert count(county, Item, ArchiveFile) == (0, 0)


def tamper(bag: Path, rel: str, change: Any) -> None:
    """Change a JSON file of the bag and make the bag's manifests agree: a bag made by a hostile hand."""
    path = bag / rel
    data = json.loads(path.read_text(encoding="utf-8"))
    change(data)
    path.write_text(json.dumps(data, ensure_ascii=False), encoding="utf-8")
    bagit.Bag(str(bag)).save(manifests=True)


@pytest.mark.parametrize(
    ("what", "change", "said"),
    [
        (
            "a file path out of the item's folder",
            lambda r: r["files"][0].update(path="../../../../../x.jpg"),
            "outside",
        ),
        ("a master that is no file of the item", lambda r: r["pages"][0].update(master_name="../x.jpg"), "master"),
        ("two pages on one serial", lambda r: r["pages"][1].update(serial=1), "numbered"),
    ],
)
def test_a_bag_whose_records_point_out_of_an_item_is_refused(
    sender: Settings, tmp_path: Path, what: str, change: Any, said: str
) -> None:
    bag = tmp_path / "bag"
    transfer(sender, bag)
    tamper(bag, f"data/archive/C015/WS/2013/{CONTRACTS}/transfer-record.json", change)
    county = second_station(tmp_path / "county")
    with pytest.raises(BagInvalid, match=said):
        receive_bag(county, Caller(name="李接收", role=Role.admin), bag)
    assert count(county, Item, ArchiveFile) == (0, 0), what
    assert not list(tmp_path.glob("**/x.jpg"))


@pytest.mark.parametrize(
    ("image", "said"),
    [("../../../../../../etc/passwd", "names an image outside its pages"), ("p9999999.tif", "not its page's")],
)
def test_a_page_sidecar_naming_an_image_not_its_own_is_refused(
    sender: Settings, tmp_path: Path, image: str, said: str
) -> None:
    bag = tmp_path / "bag"
    transfer(sender, bag)
    folder = f"data/archive/C015/WS/2013/{CLOSED}"
    sidecar = next((bag / folder / "pages").glob("p*.json")).relative_to(bag)
    tamper(bag, str(sidecar), lambda data: data.update(image=image))
    county = second_station(tmp_path / "county")
    with pytest.raises(BagInvalid, match=said):
        receive_bag(county, Caller(name="李接收", role=Role.admin), bag)
    assert count(county, Item, ArchiveFile) == (0, 0)  # checked before any item of the bag is filed
    assert not (county.data / "archive" / "C015").exists()


def test_an_item_filed_otherwise_here_refuses_the_bag_and_nothing_is_filed(sender: Settings, tmp_path: Path) -> None:
    bag = tmp_path / "bag"
    transfer(sender, bag)
    county = second_station(tmp_path / "county")
    caller = Caller(name="李接收", role=Role.admin)
    receive_bag(county, caller, bag)
    # A person here takes a page out of one item; the same bag then disagrees with it.
    client = TestClient(create_app(county))
    reply = client.post(f"/api/items/{CONTRACTS}/pages/2/withdraw", json={"note": "错扫"}, headers=bearer(county))
    assert reply.status_code == 200, reply.text
    before = count(county, Item, ArchiveFile, Event)
    refused = cli(county, "receive", str(bag))
    assert refused.returncode == 10, refused.stdout + refused.stderr
    assert CONTRACTS in refused.stderr and "Nothing of the bag was filed" in refused.stderr
    assert count(county, Item, ArchiveFile, Event) == before


def test_a_receipt_cut_off_midway_files_no_half_item_and_receiving_again_finishes_it(
    sender: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    bag = tmp_path / "bag"
    transfer(sender, bag)
    county = second_station(tmp_path / "county")
    caller = Caller(name="李接收", role=Role.admin)
    moved: list[str] = []

    def fault(step: str, code_key: str) -> None:
        if step == steps.MOVE_IN and code_key == CONTRACTS:
            moved.append(code_key)
            if len(moved) == 3:  # midway through the item's files
                raise OSError(5, "Input/output error")

    monkeypatch.setattr(steps, "hook", fault)
    with pytest.raises(OSError):
        receive_bag(county, caller, bag)
    monkeypatch.setattr(steps, "hook", None)
    with session_scope(county.effective_database_url) as session:
        assert session.scalar(select(Item).where(Item.code_key == CONTRACTS)) is None
    assert not (county.data / "archive" / "C015" / "WS" / "2013" / CONTRACTS).exists()
    audit = cli(county, "audit")
    assert audit.returncode == 0 and "UNTRACKED" not in audit.stdout, audit.stdout

    report = receive_bag(county, caller, bag)
    assert CONTRACTS in report.filed
    assert holdings(county) == {code: item for code, item in holdings(sender).items() if code != OTHER}


def test_a_folder_that_is_not_a_bag_is_refused(station_env: Settings, tmp_path: Path) -> None:
    (tmp_path / "not-a-bag").mkdir()
    (tmp_path / "not-a-bag" / "a.pdf").write_bytes(b"%PDF-1.4")
    with pytest.raises(BagInvalid, match="not a readable BagIt bag"):
        receive_bag(station_env, Caller(name="x", role=Role.admin), tmp_path / "not-a-bag")
    assert count(station_env, Item) == (0,)


def test_a_transfer_of_an_archive_with_a_changed_file_is_refused_and_leaves_nothing(
    sender: Settings, tmp_path: Path
) -> None:
    taken = tmp_path / "taken"
    taken.mkdir()
    (taken / "x.txt").write_text("something")
    refused = cli(sender, "transfer", "--fonds", "C015", "--to", str(taken))
    assert refused.returncode == 10 and "never written over" in refused.stderr, refused.stderr

    # A corrected page still being derived again: its item waits for the next transfer, and is said to.
    with session_scope(sender.effective_database_url) as session:
        item = session.scalar(select(Item).where(Item.code_key == CONTRACTS))
        assert item is not None
        item.pages[0].state = "queued"
    done = cli(sender, "transfer", "--fonds", "C015", "--to", str(tmp_path / "first"))
    assert done.returncode == 0, done.stderr
    assert f"left out  {CONTRACTS}  (busy)" in done.stdout and "1 item," in done.stdout, done.stdout
    assert [str(r.code) for r in read_catalogue(tmp_path / "first" / "data" / "归档文件目录.csv").rows] == [CLOSED]
    shutil.rmtree(tmp_path / "first")
    with session_scope(sender.effective_database_url) as session:
        session.execute(update(ItemPage).values(state="done"))
        session.execute(delete(AccessRecord))

    master = f"C015/WS/2013/{CLOSED}/{CLOSED}-0001.jpg"
    flip_byte(sender.data / "archive" / master)
    refused = cli(sender, "transfer", "--fonds", "C015", "--to", str(tmp_path / "bag"))
    assert refused.returncode == 18, refused.stdout + refused.stderr
    assert f"{master} (master) changed since it was recorded" in refused.stderr
    assert "scanstation audit" in refused.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data", "inbox", "taken"]  # no bag, no half bag
    with session_scope(sender.effective_database_url) as session:
        assert session.scalar(select(func.count()).where(AccessRecord.action == "transfer")) == 0


@pytest.mark.postgres
def test_a_bag_is_received_into_a_postgresql_catalogue(sender: Settings, tmp_path: Path, postgres_url: str) -> None:
    bag = tmp_path / "bag"
    transfer(sender, bag)
    county = second_station(tmp_path / "county", database_url=postgres_url)
    report = receive_bag(county, Caller(name="李接收", role=Role.admin), bag)
    assert sorted(report.filed) == [CONTRACTS, CLOSED] and report.already == []
    assert holdings(county) == {code: item for code, item in holdings(sender).items() if code != OTHER}
    assert found(county, "孔英") == [hit for hit in found(sender, "孔英") if hit[0] == CONTRACTS] != []
    again = receive_bag(county, Caller(name="李接收", role=Role.admin), bag)
    assert again.filed == [] and sorted(again.already) == [CONTRACTS, CLOSED]
