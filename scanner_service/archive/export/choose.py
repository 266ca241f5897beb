"""Which items an export holds, and which it leaves out and why.

An item goes in when the exporter may see it (``access.item_filter``: its role and fonds), it has pages
filed, and it is open (开放, no 密级). A restricted item goes in only when an archivist (or an admin)
names it (``items``) and asks for restricted items (``include_restricted``): a village disc must not
carry a closed record because it happened to lie in the same year. What is left out is listed for the
exporter (never on the disc: a restricted item's 档号 and title are not for the village).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from sqlalchemy import select
from sqlalchemy.orm import Session, selectinload

from scanner_service.archive import access
from scanner_service.archive import archival_code as ac
from scanner_service.archive.models import Item, Role
from scanner_service.exceptions import NotFound, UnusableInput

EXPORTERS = (Role.admin, Role.archivist)

# Disc sizes a volume may be given by name (bytes, what the medium holds, rounded down).
DISC_SIZES = {"CD": 700 * 10**6, "DVD": 4_700 * 10**6, "DVD-DL": 8_500 * 10**6, "BD": 25_000 * 10**6}
_SIZE = re.compile(r"(?i)^\s*(\d+(?:\.\d+)?)\s*(k|m|g|t)?i?b?\s*$")
_UNITS = {None: 1, "k": 10**3, "m": 10**6, "g": 10**9, "t": 10**12}
MIN_VOLUME = 10 * 10**6  # the page, its catalogue and one item must fit


@dataclass(frozen=True)
class ExportSpec:
    """What to export, as the exporter asked (the command line's or the API's options)."""

    fonds: str | None = None
    category: str | None = None
    years: tuple[int, int] | None = None  # first and last year, both included
    items: tuple[str, ...] = ()  # 档号 in either style
    include_restricted: bool = False
    recipient: str | None = None  # for whom: the village archive room the disc goes to
    purpose: str | None = None
    volume_size: int | None = None  # bytes a volume may hold; None = one folder, whatever its size

    def describe(self) -> dict[str, object]:
        """The request as recorded with the export."""
        return {
            "fonds": self.fonds,
            "category": self.category,
            "years": list(self.years) if self.years else None,
            "items": list(self.items),
            "include_restricted": self.include_restricted,
            "volume_size": self.volume_size,
        }


@dataclass(frozen=True)
class LeftOut:
    """An item the request named or covered that is not in the export."""

    archival_code: str
    reason_code: str  # restricted, no_pages, pdf_missing, pdf_changed, too_big
    reason: str


@dataclass
class Selection:
    items: list[Item] = field(default_factory=list)
    left_out: list[LeftOut] = field(default_factory=list)


def parse_years(text: str | None) -> tuple[int, int] | None:
    """``1998-2013`` or ``2013`` as (first, last); None for no limit."""
    if not text or not text.strip():
        return None
    match = re.fullmatch(r"\s*(\d{4})\s*(?:[-–—~至到]\s*(\d{4}))?\s*", text)
    if not match:
        raise UnusableInput(f"Years {text!r}: write one year (2013) or a range (1998-2013).", reason_code="bad_years")
    first = int(match.group(1))
    last = int(match.group(2) or first)
    if last < first:
        raise UnusableInput(f"Years {text!r}: the range ends before it starts.", reason_code="bad_years")
    return first, last


def parse_volume_size(text: str | None) -> int | None:
    """A volume's size: CD, DVD, DVD-DL, BD, or a number with a unit (700M, 4.7G, 700MB); None for none."""
    if not text or not text.strip():
        return None
    named = DISC_SIZES.get(text.strip().upper())
    if named:
        return named
    match = _SIZE.match(text)
    if not match:
        names = ", ".join(DISC_SIZES)
        raise UnusableInput(
            f"Volume size {text!r}: give {names}, or a size such as 700M or 4.7G.", reason_code="bad_volume_size"
        )
    size = int(float(match.group(1)) * _UNITS[(match.group(2) or "").lower() or None])
    if size < MIN_VOLUME:
        raise UnusableInput(
            f"Volume size {text!r} is too small: a volume needs at least {MIN_VOLUME // 10**6} MB.",
            reason_code="bad_volume_size",
        )
    return size


def restriction(item: Item) -> str:
    """Why a reader may not see the item without a grant, in the words of its description."""
    if item.classification:
        return f"密级 {item.classification}"
    return f"开放标识 {item.open_status}" if item.open_status else "未标开放"


def choose_items(session: Session, caller: access.Caller, spec: ExportSpec) -> Selection:
    """The items of the export in archival order, and those left out with their reasons.

    ``spec.items`` names items: each must be an item the caller may see (NotFound names those that are
    not, as the API does: a 档号 the caller may not see is no item to it). Without names, every item the
    caller may see under the fonds, category and years goes in.
    """
    access.require_role(caller, *EXPORTERS)
    if spec.fonds:
        access.require_fonds(caller, spec.fonds)
    stmt = select(Item).where(access.item_filter(caller)).options(selectinload(Item.pages))
    named: set[str] = set()
    if spec.items:
        keys = {str(ac.parse(text)): text for text in spec.items}
        named = set(keys)
        stmt = stmt.where(Item.code_key.in_(list(keys)))
    if spec.fonds:
        stmt = stmt.where(Item.fonds == spec.fonds.upper())
    if spec.category:
        stmt = stmt.where(Item.category == spec.category.upper())
    if spec.years:
        stmt = stmt.where(Item.year >= spec.years[0], Item.year <= spec.years[1])
    found = list(session.scalars(stmt))
    if spec.items:
        missing = sorted(named - {item.code_key for item in found})
        if missing:
            shown = ", ".join(keys[key] for key in missing)
            raise NotFound(f"No item {shown} that this exporter may see (within the fonds, category and years asked).")
    found.sort(key=lambda item: ac.parse(item.code_key).sort_key())
    selection = Selection()
    for item in found:
        if not item.pages_filed or not item.pdf_name:
            selection.left_out.append(LeftOut(item.archival_code, "no_pages", "尚无已归档的页面 (no pages filed yet)"))
        elif access.is_restricted(item) and not (spec.include_restricted and item.code_key in named):
            how = "" if spec.include_restricted else " and --include-restricted"
            selection.left_out.append(
                LeftOut(
                    item.archival_code,
                    "restricted",
                    f"{restriction(item)}: not open; an archivist may include it by naming it (--items){how}",
                )
            )
        else:
            selection.items.append(item)
    return selection
