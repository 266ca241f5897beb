"""Filing a finished batch on its own: by the 档号 its folder is named by, or split at its separator
sheets into several items — all of it or none of it is proposed, and each item is filed in a
filing of its own (see :mod:`scanner_service.archive.filing.files` for what each guarantees)."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select

from scanner_service.archive import archival_code as ac
from scanner_service.archive.batches import in_order, is_excluded, usable
from scanner_service.archive.db import session_scope
from scanner_service.archive.filing.files import file_batch
from scanner_service.archive.filing.items import find_item
from scanner_service.archive.models import Batch, FilingMode, Fonds, ItemPage, PageState
from scanner_service.archive.separators import RunPage, split_run
from scanner_service.exceptions import ScanstationError
from scanner_service.settings import Settings
from workers.stages.separator import SeparatorMark

log = logging.getLogger(__name__)


def _problem(code: str, message: str, seq: int | None = None) -> dict[str, Any]:
    return {"code": code, "message": message, "page": seq}


def _filed_entry(code: str, seqs: list[int], pages_filed: int, check: str | None) -> dict[str, Any]:
    return {"archival_code": code, "batch_pages": seqs, "pages_filed": pages_filed, "page_check": check}


def _partly_filed(batch_id: int, code: str, missing: list[int]) -> dict[str, Any]:
    listed = ", ".join(map(str, missing))
    return _problem(
        "partly_filed",
        f"{code} holds this batch's pages filed before; page(s) {listed} became usable since and are not in it: "
        f"file them into it (POST /api/batches/{batch_id}/file with its 档号 and mode append or insert) "
        "or leave them out (excluded).",
        missing[0],
    )


@dataclass
class _Planned:
    archival_code: str
    seqs: list[int]
    done: dict[str, Any] | None = None  # filed by an earlier run of this assembly: its report entry


def plan_batch(settings: Settings, batch_id: int) -> tuple[list[_Planned], list[dict[str, Any]], bool]:
    """What filing a finished batch would do: the items and their batch pages, the problems that stop
    it, and whether the plan came from separator sheets. Nothing is written."""
    with session_scope(settings.effective_database_url) as session:
        batch = session.get(Batch, batch_id)
        if batch is None:
            return [], [], False
        target = (batch.filing or {}).get("target")
        pages = [p for p in in_order(batch.pages) if not is_excluded(p)]  # a person's order; excluded left out
        run = []
        for p in pages:
            mark = (p.details or {}).get("separator")
            run.append(
                RunPage(
                    seq=p.seq,
                    mark=SeparatorMark(**mark) if mark else None,
                    blank=p.blank,
                )
            )
        failed = [p.seq for p in pages if p.state == PageState.failed]
        split = split_run(run)
        problems = [_problem(pr.code, pr.message, pr.seq) for pr in split.problems]
        if split.has_separators:
            segments = [_Planned(s.archival_code, list(s.page_seqs)) for s in split.segments]
        elif target:
            segments = [_Planned(target, [p.seq for p in pages if usable(p)])]
        else:
            return [], [], False
        if failed:
            listed = ", ".join(map(str, failed))
            problems.append(
                _problem("pages_failed", f"Page(s) {listed} failed; file the batch by hand once they are dealt with.")
            )
        for segment in segments:
            code_text, seqs = segment.archival_code, segment.seqs
            item = find_item(session, code_text)
            code = ac.parse(code_text)
            fonds = session.get(Fonds, code.fonds)
            if item is None and fonds is not None and not fonds.allow_new_items:
                problems.append(
                    _problem(
                        "not_in_catalogue",
                        f"{code_text} is not in the catalogue and fonds {code.fonds} takes no new items from scanning.",
                        seqs[0] if seqs else None,
                    )
                )
            if item is not None and any(row.batch_id == batch_id for row in item.pages):
                # Filed already: by an earlier run of this same assembly (a worker died after filing), or
                # before a page of the segment became usable (a blank cleared later): then it says so.
                filed = [r.batch_seq for r in sorted(item.pages, key=lambda r: r.serial) if r.batch_id == batch_id]
                segment.done = _filed_entry(
                    item.archival_code, [s for s in filed if s is not None], item.pages_filed, item.page_check
                )
                # A page filed in another item (by a split) is not missing here.
                elsewhere = set(
                    session.scalars(
                        select(ItemPage.batch_seq).where(ItemPage.batch_id == batch_id, ItemPage.item_id != item.id)
                    )
                )
                missing = [s for s in seqs if s not in filed and s not in elsewhere]
                if missing:
                    problems.append(_partly_filed(batch_id, item.archival_code, missing))
                continue
            if item is not None and item.pages_filed:
                problems.append(
                    _problem(
                        "item_has_pages",
                        f"{item.archival_code} already has {item.pages_filed} pages: choose "
                        "append, insert or replace when filing this batch.",
                        seqs[0] if seqs else None,
                    )
                )
            if split.has_separators and item is not None and item.expected_pages not in (None, len(seqs)):
                problems.append(
                    _problem(
                        "page_count_mismatch",
                        f"{item.archival_code}: {len(seqs)} pages between its sheets, "
                        f"the catalogue says {item.expected_pages} (页数); a separator sheet may be missing.",
                        seqs[0] if seqs else None,
                    )
                )
        return segments, problems, split.has_separators


def auto_file(settings: Settings, batch_id: int, *, propose_only: bool = False) -> dict[str, Any]:
    """File a finished batch by its folder name or its separator sheets, all of it or none of it.

    Returns the report stored as ``Batch.filing``; a report with problems sends the batch to review.
    ``propose_only`` (the batch has pages a person has still to look at): nothing is filed, the
    filing is only proposed (``proposed``), to be made once every flag is corrected or accepted.
    """
    segments, problems, by_sheets = plan_batch(settings, batch_id)
    with session_scope(settings.effective_database_url) as session:
        batch = session.get(Batch, batch_id)
        report: dict[str, Any] = dict(batch.filing or {}) if batch else {}
    report.update({"by": "separator sheets" if by_sheets else "folder name", "items": [], "problems": problems})
    if not segments:
        report.pop("by")
        return report
    report.pop("proposed", None)
    if problems or propose_only:
        # What is filed already stays reported as filed (with the pages really in it); the rest is proposed.
        report["items"] = [s.done for s in segments if s.done is not None]
        report["proposed"] = [{"archival_code": s.archival_code, "batch_pages": s.seqs} for s in segments]
        return report
    for segment in segments:
        code_text, seqs = segment.archival_code, segment.seqs
        if segment.done is not None:
            report["items"].append(segment.done)
            continue
        try:
            result = file_batch(settings, batch_id, code_text, seqs=seqs, mode=FilingMode.new, check_count=by_sheets)
        except ScanstationError as err:
            problems.append(_problem(err.reason_code, err.message, seqs[0] if seqs else None))
            continue
        except Exception as err:  # noqa: BLE001 - the batch and its PDF stand; filing is retried by hand
            log.exception("batch %s: filing into %s failed", batch_id, code_text)
            problems.append(
                _problem("filing_error", f"Filing into {code_text} failed: {err}", seqs[0] if seqs else None)
            )
            continue
        report["items"].append(_filed_entry(result.archival_code, seqs, result.pages_filed, result.page_check))
    return report
