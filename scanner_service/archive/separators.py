"""Splitting a scanned run at its separator sheets (分隔页) into catalogue items.

The page stage (:func:`workers.stages.separator.read_separator`) says which pages are sheets and what their
QR codes carry; here the archive checks each code against the 档号 rules and decides the items: each readable
sheet starts an item that takes the non-blank pages up to the next sheet. What cannot be filed safely
becomes a :class:`RunProblem`, which sends the run to review.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from scanner_service.archive.archival_code import ArchivalCode, InvalidArchivalCode, parse
from workers.stages.separator import SeparatorMark


@dataclass(frozen=True)
class RunPage:
    """One scanned page of a run: its number in scan order, the separator on it if any, and whether it is
    blank (the empty back of a duplex-scanned sheet)."""

    seq: int
    mark: SeparatorMark | None
    blank: bool


@dataclass(frozen=True)
class Segment:
    """One catalogue item: the 档号 from its sheet, the sheet's page and the item's pages (never empty; blank
    pages and the sheet itself left out)."""

    archival_code: str
    sheet_seq: int
    page_seqs: tuple[int, ...]


@dataclass(frozen=True)
class RunProblem:
    """Why a run cannot be filed as it is. ``code``: unreadable_separator, pages_before_first_separator,
    repeated_separator or empty_segment; ``seq``: the page it concerns; ``message``: for the operator."""

    code: str
    seq: int | None
    message: str


@dataclass(frozen=True)
class RunSplit:
    """The items a run splits into and the problems that keep it from being filed (then it goes to review;
    ``segments`` still shows what the station would have done)."""

    segments: tuple[Segment, ...]
    problems: tuple[RunProblem, ...]

    @property
    def ok(self) -> bool:
        return not self.problems

    @property
    def has_separators(self) -> bool:
        # Every problem concerns a separator sheet, and a run without sheets has neither segments nor problems.
        return bool(self.segments or self.problems)


def _pages(seqs: Sequence[int]) -> str:
    if len(seqs) == 1:
        return f"page {seqs[0]}"
    if list(seqs) == list(range(seqs[0], seqs[0] + len(seqs))):
        return f"pages {seqs[0]}-{seqs[-1]}"
    return "pages " + ", ".join(str(s) for s in seqs)


def _same_item(code: str) -> ArchivalCode:
    """What makes two sheets the same item: the 档号 itself, however it is written (DA/T 22 or DA/T 13)."""
    return parse(code)


def checked_mark(mark: SeparatorMark) -> SeparatorMark:
    """The mark with its code checked against the 档号 rules: a sheet whose code does not parse is one
    whose 档号 cannot be read (printed by hand-edited software, or a code typed wrong at print time)."""
    if not mark.readable or mark.archival_code is None:
        return mark
    try:
        parse(mark.archival_code)
    except InvalidArchivalCode as exc:
        detail = f'separator QR code does not carry a valid 档号: "{mark.archival_code}": {exc}'
        return SeparatorMark(None, False, detail)
    return mark


def split_run(pages: Sequence[RunPage]) -> RunSplit:
    """Split a scanned run (pages in scan order) at its separator sheets.

    Each readable sheet starts an item that takes the non-blank pages up to the next sheet. Pages after an
    unreadable sheet belong to no item. A run without any sheet gives no segments and no problems.
    """
    if not any(p.mark is not None for p in pages):
        return RunSplit((), ())
    pages = [p if p.mark is None else RunPage(p.seq, checked_mark(p.mark), p.blank) for p in pages]
    segments: list[Segment] = []
    problems: list[RunProblem] = []
    before: list[int] = []
    first_sheet: dict[ArchivalCode | str, int] = {}
    sheet: RunPage | None = None  # the sheet that the pages now being collected follow
    collected: list[int] = []

    def close(next_sheet: bool) -> None:
        if sheet is None or sheet.mark is None:
            return
        code = sheet.mark.archival_code
        if not sheet.mark.readable or code is None:
            where = f"; the item's {_pages(collected)} cannot be filed" if collected else ""
            problems.append(
                RunProblem(
                    "unreadable_separator",
                    sheet.seq,
                    f"Page {sheet.seq} is a separator sheet whose 档号 cannot be read ({sheet.mark.detail}){where}. "
                    "Reprint the sheet and scan the item again, or file it by hand.",
                )
            )
            return
        if not collected:
            problems.append(
                RunProblem(
                    "empty_segment",
                    sheet.seq,
                    f"The separator sheet on page {sheet.seq} ({code}) is followed by "
                    + ("another separator sheet" if next_sheet else "the end of the run")
                    + " with no pages of the item between: the item's pages are missing or a sheet is extra.",
                )
            )
            return
        segments.append(Segment(code, sheet.seq, tuple(collected)))

    for page in pages:
        if page.mark is None:
            if page.blank:
                continue
            (collected if sheet is not None else before).append(page.seq)
            continue
        close(next_sheet=True)
        sheet, collected = page, []
        code = page.mark.archival_code
        if page.mark.readable and code is not None:
            key = _same_item(code)
            if key in first_sheet:
                problems.append(
                    RunProblem(
                        "repeated_separator",
                        page.seq,
                        f"The separator sheet on page {page.seq} carries 档号 {code}, already on the sheet on page "
                        f"{first_sheet[key]}: one item cannot be scanned twice in a run. Remove one of the sheets "
                        "or check that the right sheet was printed.",
                    )
                )
            else:
                first_sheet[key] = page.seq
    close(next_sheet=False)
    if before:
        problems.insert(
            0,
            RunProblem(
                "pages_before_first_separator",
                before[0],
                f"{_pages(before).capitalize()} {'comes' if len(before) == 1 else 'come'} before the first separator "
                "sheet and belong to no item: put the item's separator sheet in front, or scan them in a run of "
                "their own.",
            ),
        )
    problems.sort(key=lambda p: (p.seq is None, p.seq or 0))
    return RunSplit(tuple(segments), tuple(problems))
