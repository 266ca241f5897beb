"""Two people correcting the same filed page: the second, made on the version the first replaced, is
refused (409 stale_version) and loses nothing — on SQLite and on PostgreSQL (compare-and-set in SQL)."""

from __future__ import annotations

from pathlib import Path

import pytest

from scanner_service.archive import archival_code as ac
from scanner_service.archive.access import Caller
from scanner_service.archive.corrections import item as corrections
from scanner_service.archive.db import migrate, session_scope
from scanner_service.archive.filing import ensure_item
from scanner_service.archive.models import Correction, ItemPage, Role
from scanner_service.exceptions import Conflict
from scanner_service.settings import build_settings

CODE = "C015-WS·2013-Y-BGS-0001"


def test_a_correction_made_on_a_replaced_version_is_refused(catalogue_url: str, tmp_path: Path) -> None:
    settings = build_settings(data=tmp_path / "data", inbox=tmp_path / "inbox", database_url=catalogue_url)
    migrate(catalogue_url)
    with session_scope(catalogue_url) as session:
        item = ensure_item(session, ac.parse(CODE), may_create=True)
        row = ItemPage(item_id=item.id, serial=1, master_name=f"{CODE}-0001.jpg", flags=[], details={})
        session.add(row)
        session.flush()
        page_id = row.id
    one, two = Caller("甲", Role.operator, ("C015",)), Caller("乙", Role.operator, ("C015",))

    with session_scope(catalogue_url) as session:
        seen_by_two = session.query(ItemPage).one()  # 乙 reads the page at version 1 …
        assert seen_by_two.version == 1
        # … 甲 turns it meanwhile (queued for derivation) …
        done = corrections.correct_page(settings, one, CODE, 1, {"turn": 90}, if_match=corrections.PageTag(page_id, 1))
        assert done.queued
        # … and 乙's write, made on version 1, is refused by the catalogue itself.
        with pytest.raises(Conflict) as stale:
            corrections._compare_and_set(session, seen_by_two, correction={"note": "乙"})
        assert stale.value.reason_code == "stale_version"
    with pytest.raises(Conflict) as again:
        corrections.correct_page(settings, two, CODE, 1, {"note": "乙"}, if_match=corrections.PageTag(page_id, 1))
    assert again.value.reason_code == "stale_version"
    with session_scope(catalogue_url) as session:
        page = session.query(ItemPage).one()
        assert (page.version, page.correction, page.state) == (2, {"turn": 90}, "queued"), "甲's turn is kept"
        assert [(c.who, c.action, c.after) for c in session.query(Correction)] == [("甲", "page", {"turn": 90})]
    corrections.correct_page(settings, two, CODE, 1, {"note": "乙看过"}, if_match=corrections.PageTag(page_id, 2))
    with session_scope(catalogue_url) as session:
        page = session.query(ItemPage).one()
        assert (page.version, page.correction) == (3, {"turn": 90, "note": "乙看过"})


def test_a_failed_derivation_marks_only_the_pages_at_the_version_it_read(catalogue_url: str, tmp_path: Path) -> None:
    """The job failed for good while deriving a page at version 2; the page was corrected again
    meanwhile (version 3): it stays queued for its newer derivation, nothing of the newer correction is
    overwritten. A page still at the version the job read is marked failed with the reason."""
    settings = build_settings(data=tmp_path / "data", inbox=tmp_path / "inbox", database_url=catalogue_url)
    migrate(catalogue_url)
    with session_scope(catalogue_url) as session:
        item = ensure_item(session, ac.parse(CODE), may_create=True)
        rows = [
            ItemPage(item_id=item.id, serial=n, master_name=f"{CODE}-000{n}.jpg", flags=[], details={}) for n in (1, 2)
        ]
        session.add_all(rows)
        session.flush()
        first, second = rows[0].id, rows[1].id
    person = Caller("甲", Role.operator, ("C015",))
    for serial in (1, 2):
        assert corrections.correct_page(settings, person, CODE, serial, {"turn": 90}).queued
    read_by_the_job = [corrections.PageTag(first, 2), corrections.PageTag(second, 2)]
    corrections.correct_page(settings, person, CODE, 1, {"turn": 180})  # page 1 corrected again: version 3
    assert corrections.fail_pending(settings, read_by_the_job, "The page could not be derived again: boom") == 1
    with session_scope(catalogue_url) as session:
        one, two = session.get(ItemPage, first), session.get(ItemPage, second)
        assert one is not None and two is not None
        assert (one.state, one.version, one.correction) == ("queued", 3, {"turn": 180}), "the newer correction stands"
        assert "error" not in one.details
        assert (two.state, two.details["error_code"]) == ("failed", "derivation_failed")
        assert "boom" in two.details["error"]
    assert corrections.fail_pending(settings, read_by_the_job, "again") == 0, "a failed page is not marked twice"
