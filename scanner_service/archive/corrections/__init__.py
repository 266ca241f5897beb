"""Corrections: what a person decides about a page, instead of (or on top of) the station's decision.

A page's ``correction`` (``Page.correction``, ``ItemPage.correction``) is a dict of what a person chose;
a key that is absent leaves that decision to the station:

- ``turn``: 90, 180 or 270 degrees clockwise, added to the station's own turn;
- ``skew_deg``: the fine angle to straighten by (degrees, after the turn);
- ``crop``: ``[x0, y0, x1, y1]`` on the master, or ``None`` for no crop at all;
- ``blank``: True or False, whatever the station thought;
- ``excluded``: True: the page is left out of the usage PDF, its master kept;
- ``note``: free text;
- ``accepted``: the flags a person looked at and accepted as they are;
- ``engine``: the OCR engine to read the page with (``rapidocr``, ``tesseract``), instead of the station's.

The station's own decision is kept (``decision``: its flags, blank, details) so that undo goes back
to it. ``version`` goes up at every change (``If-Match``). Every change is one :class:`Correction`
row (who, when, what, before → after) and one ``correction`` event.

Modules: :mod:`.batch` (a batch's pages before filing), :mod:`.item` (a filed item's pages).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from sqlalchemy.orm import Session

from scanner_service.archive.access import Caller
from scanner_service.archive.events import record_event
from scanner_service.archive.models import Correction, EventKind
from workers.pipeline import AUTO, Choices, PageFlag

FIELDS = ("turn", "skew_deg", "crop", "blank", "excluded", "note", "accepted", "engine")
DERIVED = frozenset({"turn", "skew_deg", "crop", "blank", "engine"})  # a change of these derives the page again
STATION_DECIDES_ON_NONE = frozenset({"skew_deg", "blank", "engine"})  # None: the station decides again
TURNS = (90, 180, 270)
NOT_FOR_REVIEW = frozenset({PageFlag.separator.value})  # flags that never send a batch to review


def merged(correction: Mapping[str, Any], patch: Mapping[str, Any]) -> dict[str, Any]:
    """The correction after ``patch`` (only its keys change). A turn of 0, a note of "", and None for
    ``skew_deg``, ``blank`` or ``engine`` remove the key: the station's decision stands again (a crop of
    None is a decision: no crop at all)."""
    out = dict(correction)
    for key, value in patch.items():
        if key not in FIELDS:
            raise KeyError(key)
        if (
            (key == "turn" and value in (0, None))
            or (key in ("note", "excluded") and not value)
            or (key in STATION_DECIDES_ON_NONE and value is None)
        ):
            out.pop(key, None)
        elif key == "accepted":
            out[key] = sorted(set(value or []))
            if not out[key]:
                out.pop(key)
        else:
            out[key] = value
    return out


def needs_derivation(before: Mapping[str, Any], after: Mapping[str, Any]) -> bool:
    """True if the page must be derived again from its master (its image or text changes)."""
    return any(before.get(k, _ABSENT) != after.get(k, _ABSENT) for k in DERIVED)


_ABSENT = object()


def choices_of(decision: Mapping[str, Any] | None, correction: Mapping[str, Any]) -> Choices | None:
    """What :func:`workers.pipeline.process_page_image` is told, or None for the station's own run.

    ``decision`` is the station's decision (its ``details`` hold the turn it found)."""
    if not any(k in correction for k in DERIVED):
        return None
    details = (decision or {}).get("details") or {}
    turn = None
    if "turn" in correction:
        turn = (int(details.get("turn") or 0) + int(correction["turn"])) % 360
    crop: tuple[int, int, int, int] | None | str = AUTO
    if "crop" in correction:
        box = correction["crop"]
        crop = None if box is None else (int(box[0]), int(box[1]), int(box[2]), int(box[3]))
    skew = correction.get("skew_deg")
    return Choices(
        turn=turn,
        skew_deg=None if skew is None else float(skew),
        crop=crop,
        blank=correction.get("blank"),
    )


def open_flags(flags: Iterable[str], correction: Mapping[str, Any]) -> list[str]:
    """The page's flags that still want a person: not accepted, not decided by a person's correction,
    not on an excluded page."""
    if correction.get("excluded"):
        return []
    decided = set(correction.get("accepted") or [])
    if "turn" in correction:
        decided.add(PageFlag.orientation_unsure.value)
    if "blank" in correction:
        decided.add(PageFlag.blank.value)
    return [f for f in flags if f not in decided and f not in NOT_FOR_REVIEW]


def record_correction(
    session: Session,
    caller: Caller,
    action: str,
    *,
    before: Mapping[str, Any],
    after: Mapping[str, Any],
    batch_id: int | None = None,
    seq: int | None = None,
    item_id: int | None = None,
    item_page_id: int | None = None,
    serial: int | None = None,
    archival_code: str | None = None,
    fonds: str | None = None,
    note: str | None = None,
) -> Correction:
    """One row of the history (who, when, what, before → after) and its ``correction`` event."""
    row = Correction(
        who=caller.name,
        token_id=caller.token_id,
        user_id=caller.user_id,
        action=action,
        batch_id=batch_id,
        seq=seq,
        item_id=item_id,
        item_page_id=item_page_id,
        serial=serial,
        before=dict(before),
        after=dict(after),
        note=note,
    )
    session.add(row)
    session.flush()
    record_event(
        session,
        EventKind.correction,
        batch_id=batch_id,
        item_id=item_id,
        archival_code=archival_code,
        fonds=fonds,
        page=seq if seq is not None else serial,
        detail={
            "correction": row.id,
            "action": action,
            "before": dict(before),
            "after": dict(after),
            "note": note,
            "by": caller.attribution(),
        },
    )
    return row


def history_entry(row: Correction) -> dict[str, Any]:
    """A row of the history as the API shows it."""
    return {
        "id": row.id,
        "at": row.at,
        "who": row.who,
        "kind": "person" if row.user_id is not None else "token",
        "action": row.action,
        "before": row.before,
        "after": row.after,
        "note": row.note,
    }
