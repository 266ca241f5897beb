"""The archive's catalogue of items: 归档文件目录 rows in, DA/T 18 descriptions kept on the items."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from scanner_service.archive import archival_code as ac
from scanner_service.archive.catalogue_import import CatalogueImport
from scanner_service.archive.filing import ensure_item, page_check, write_description
from scanner_service.archive.models import Event, EventKind, Fonds, Item
from scanner_service.exceptions import NotFound
from scanner_service.settings import Settings

# DA/T 18 fields an archivist may set on an item, by their API names. 保管期限 is part of the 档号 itself.
DESCRIPTION_FIELDS = (
    "title",
    "author",
    "date_text",
    "doc_number",
    "expected_pages",
    "classification",
    "open_status",
    "note",
    "serial",
)


def normal_open_status(text: str) -> str | None:
    """开放标识 as stored: 开放 for any way of writing "open", otherwise the text as written (stripped)."""
    flat = "".join(text.split())
    if not flat:
        return None
    return "开放" if flat.lower() in ("开放", "open", "是", "yes") else flat


def ensure_fonds(session: Session, code: str, *, style: ac.CodeStyle = ac.DAT22) -> Fonds:
    fonds = session.get(Fonds, code)
    if fonds is None:
        fonds = Fonds(code=code, code_style="dat13" if style is ac.DAT13 else "dat22", allow_new_items=True)
        session.add(fonds)
        session.flush()
    return fonds


def describe_item(
    session: Session,
    code: ac.ArchivalCode,
    values: dict[str, Any],
    *,
    written: str,
    actor: str,
    settings: Settings | None = None,
) -> Item:
    """Create the item if new (its fonds too) and set the given description fields; with ``settings``,
    also rewrite the item folder's item.json so an offline copy carries the new description."""
    ensure_fonds(session, code.fonds, style=ac.style_of(written))
    item = ensure_item(session, code, may_create=True)
    if values.get("open_status") is not None:
        values = {**values, "open_status": normal_open_status(values["open_status"])}
    changed = {}
    for name, value in values.items():
        if name not in DESCRIPTION_FIELDS:
            continue
        if getattr(item, name) != value:
            changed[name] = value
            setattr(item, name, value)
    item.page_check = page_check(item)
    if changed and settings is not None:
        session.flush()
        write_description(settings, session, item)
    if changed:
        session.add(
            Event(
                kind=EventKind.item_described,
                archival_code=item.archival_code,
                fonds=item.fonds,
                item_id=item.id,
                detail={"fields": sorted(changed), "by": actor},
            )
        )
    return item


def import_catalogue(
    session: Session, imported: CatalogueImport, *, actor: str, settings: Settings | None = None
) -> dict[str, int]:
    """Store every row of a checked 归档文件目录 (all or nothing: the caller's transaction)."""
    created = updated = 0
    for row in imported.rows:
        existed = session.query(Item.id).filter(Item.code_key == str(row.code)).first() is not None
        values: dict[str, Any] = {
            "title": row.title,
            "author": row.author,
            "date_text": row.date_text or None,
            "doc_number": row.doc_number,
            "expected_pages": row.pages,
            "classification": row.classification,
            "note": row.note,
            "serial": row.serial,
        }
        if row.open_status:
            values["open_status"] = row.open_status  # normalised by describe_item
        item = describe_item(session, row.code, values, written=str(row.code), actor=actor, settings=settings)
        item.date = row.date
        created += not existed
        updated += existed
    return {"rows": len(imported.rows), "created": created, "updated": updated}


def check_catalogue(session: Session, imported: CatalogueImport) -> dict[str, int]:
    """What :func:`import_catalogue` would do with these rows, writing nothing (no row, no fonds, no file):
    how many items it would create and how many it would update."""
    keys = [str(row.code) for row in imported.rows]
    existing: set[str] = set()
    for start in range(0, len(keys), 500):  # SQLite takes a limited number of parameters in one IN
        existing.update(session.scalars(select(Item.code_key).where(Item.code_key.in_(keys[start : start + 500]))))
    updated = sum(key in existing for key in keys)
    return {"rows": len(keys), "created": len(keys) - updated, "updated": updated}


def items_for_sheets(
    session: Session,
    fonds: str,
    *,
    year: int | None = None,
    category: str | None = None,
    include_filed: bool = False,
    codes: list[str] | None = None,
) -> list[Item]:
    """The catalogue's items to print separator sheets for, in archival order (by default only items
    with no pages yet: what is still to be scanned).

    ``codes`` (档号 in either style) chooses the items: exactly those, filed or not; NotFound names any
    that is not an item of ``fonds``, InvalidArchivalCode any that is no 档号."""
    stmt = select(Item).where(Item.fonds == fonds.upper())
    if codes:
        keys = {str(ac.parse(text)): text for text in codes}
        chosen = list(session.scalars(stmt.where(Item.code_key.in_(list(keys)))))
        missing = sorted(set(keys) - {i.code_key for i in chosen})
        if missing:
            raise NotFound(f"No catalogue item {', '.join(keys[k] for k in missing)} in fonds {fonds.upper()}.")
        return sorted(chosen, key=lambda i: ac.parse(i.code_key).sort_key())
    if year:
        stmt = stmt.where(Item.year == year)
    if category:
        stmt = stmt.where(Item.category == category.upper())
    if not include_filed:
        stmt = stmt.where(Item.pages_filed == 0)
    order = (Item.category, Item.year, Item.retention, Item.org, Item.volume, Item.item_no)
    return list(session.scalars(stmt.order_by(*order)))
