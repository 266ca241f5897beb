"""The 档号 (archival reference code): parse, check and format it. Pure functions, no database.

Levels (DA/T 22-2015, DA/T 13-2022): 全宗号 fonds → 门类 category → 年度 year → 保管期限 retention →
机构/问题 organisation or problem (optional) → 案卷号 volume (optional, older 案卷 arrangement) → 件号 item.

Accepted forms, after normalisation (below), ``[...]`` optional::

    FONDS SEP CATEGORY SEP YEAR SEP RETENTION [SEP ORG] [SEP VOLUME] SEP ITEM

    C015-WS·2013-Y-BGS-0012        DA/T 22-2015
    C015-WS·2013-Y-0012            DA/T 22-2015 without 机构/问题
    C015-WS·2013·Y·BGS-0012        DA/T 13-2022 (classification levels joined with ``·``)
    C015-WS·2013·Y-0012            DA/T 13-2022 without 机构/问题
    C015-WS·2013-Y-BGS-001-0012    案卷 form: 案卷号 001, item 0012 in that volume
    C015-WS·2013-Y-001-0012        案卷 form without 机构/问题

- SEP is ``-`` or ``·``, either one at every place, whatever style the fonds is configured to write:
  a code typed in DA/T 22 form, in DA/T 13 form or in a mix of both is read the same.
- FONDS 全宗号: 1-8 letters or digits (typically a letter and 3 digits, ``C015``).
- CATEGORY 门类: 2-4 letters: WS 文书, KJ 会计 (DA/T 22; KU is accepted too), ZP 照片, LY 录音, LX 录像,
  SW 实物, or a local code such as TD 土地承包. Kept as written (KU is not turned into KJ).
- YEAR 年度: 4 digits, 1900-2100.
- RETENTION 保管期限: ``Y`` 永久, ``D30`` 30 年, ``D10`` 10 年 only. The older 长期 ``C`` and 短期 ``D`` are refused:
  such files must be re-appraised to one of the current periods.
- ORG 机构/问题: 1-8 letters or digits with at least one letter (``BGS``). A part of exactly 3 digits in
  that place is a VOLUME, and an all-digit organisation code could not be told from a volume or an item,
  so it is refused.
- VOLUME 案卷号: exactly 3 digits, 001-999.
- ITEM 件号: exactly 4 digits, 0001-9999.

Normalisation before parsing: Unicode NFKC, every space removed (also full-width and zero-width ones),
lower-case letters upper-cased, and the look-alikes an operator may type read as the two separators:
``．`` ``・`` ``･`` ``•`` ``‧`` ``∙`` ``⋅`` ``.`` as ``·``,
and ``－`` ``—`` ``–`` ``‐`` ``‑`` ``‒`` ``―`` ``−`` ``﹣`` as ``-``.

The old 全宗号-类别号-案卷号-件号 form without 年度 and 保管期限 (``C015-WS-001-0012``) is not accepted: the
error says the year is missing and shows the accepted 案卷 form.

Formatting writes one of two styles (:class:`CodeStyle`): ``DAT22`` (``C015-WS·2013-Y-BGS-0012``) or ``DAT13``
(``C015-WS·2013·Y·BGS-0012``); a volume is always written ``-001`` before the item. For every valid code ``c``,
``parse(c.format(DAT22)) == c == parse(c.format(DAT13))``.

Masters are named after DA/T 31-2017: 档号 + ``-`` + 4-digit page serial (``C015-WS·2013-Y-BGS-0012-0001.tif``).
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from typing import NoReturn

from scanner_service.exceptions import ConfigError, UnusableInput

__all__ = [
    "DAT13",
    "DAT22",
    "KNOWN_CATEGORIES",
    "RETENTIONS",
    "ArchivalCode",
    "CodeStyle",
    "InvalidArchivalCode",
    "is_archival_code",
    "parse",
    "style_for",
]

DOT = "·"  # U+00B7 MIDDLE DOT, as written in DA/T 22 and DA/T 13
DASH = "-"

KNOWN_CATEGORIES: dict[str, str] = {
    "WS": "文书",
    "KJ": "会计",
    "KU": "会计",
    "ZP": "照片",
    "LY": "录音",
    "LX": "录像",
    "SW": "实物",
    "TD": "土地承包",
}
"""Category codes with their names; any other code of 2-4 letters is accepted as a local 门类."""

RETENTIONS: dict[str, str] = {"Y": "永久", "D30": "30年", "D10": "10年"}
"""The accepted 保管期限, in the order codes sort (永久 first)."""

_RETENTION_RANK = {code: rank for rank, code in enumerate(RETENTIONS)}

_LABELS = {
    "fonds": "全宗号 (fonds)",
    "category": "门类 (category)",
    "year": "年度 (year)",
    "retention": "保管期限 (retention)",
    "org": "机构/问题 (org)",
    "volume": "案卷号 (volume)",
    "item": "件号 (item)",
    "code": "形式 (shape)",
}

_SHAPE = "全宗号-门类·年度-保管期限[-机构/问题][-案卷号]-件号 such as C015-WS·2013-Y-BGS-0012"

_LOOKALIKES = str.maketrans(
    {
        **dict.fromkeys("．・･•‧∙⋅.", DOT),
        **dict.fromkeys("－—–‐‑‒―−﹣", DASH),
    }
)
_SPLIT = re.compile(f"[{re.escape(DOT + DASH)}]")

_FONDS = re.compile(r"[A-Z0-9]{1,8}")
_CATEGORY = re.compile(r"[A-Z]{2,4}")
_YEAR = re.compile(r"[0-9]{4}")
_ORG = re.compile(r"(?=[A-Z0-9]*[A-Z])[A-Z0-9]{1,8}")
_VOLUME = re.compile(r"[0-9]{3}")
_ITEM = re.compile(r"[0-9]{4}")

YEAR_MIN, YEAR_MAX = 1900, 2100


class InvalidArchivalCode(UnusableInput):
    """A 档号 that is not one: ``part`` names the wrong part (fonds, category, year, retention, org, volume,
    item, or code when the whole shape is wrong); the message names it in Chinese and English."""

    code = "invalid_archival_code"

    def __init__(self, message: str, *, part: str) -> None:
        super().__init__(message, reason_code="invalid_archival_code")
        self.part = part


@dataclass(frozen=True)
class CodeStyle:
    """How a 档号 is written: ``level_sep`` joins 年度, 保管期限 and 机构/问题.

    Fonds and category are always joined by ``-``, category and year by ``·``, and volume and item are
    always written after ``-``.
    """

    name: str
    level_sep: str


DAT22 = CodeStyle("DA/T 22", DASH)
"""DA/T 22-2015: ``C015-WS·2013-Y-BGS-0012``."""
DAT13 = CodeStyle("DA/T 13", DOT)
"""DA/T 13-2022: ``C015-WS·2013·Y·BGS-0012``."""

_STYLES = {"dat22": DAT22, "dat222015": DAT22, "dat13": DAT13, "dat132022": DAT13}


def style_for(name: str) -> CodeStyle:
    """The style named ``name``: "DA/T 22", "dat22", "DA/T 22-2015", "DA/T 13", "dat13", "DA/T 13-2022"
    (case, spaces and punctuation do not matter). Raises ConfigError for any other name."""
    key = re.sub(r"[^a-z0-9]", "", unicodedata.normalize("NFKC", name).lower())
    try:
        return _STYLES[key]
    except KeyError:
        raise ConfigError(f'Unknown 档号 style "{name}": use "DA/T 22" or "DA/T 13".') from None


@dataclass(frozen=True, kw_only=True)
class ArchivalCode:
    """One 档号, already checked: constructing one with a wrong field raises InvalidArchivalCode."""

    fonds: str
    category: str
    year: int
    retention: str
    org: str | None = None
    volume: int | None = None
    item: int

    def __post_init__(self) -> None:
        shown = "档号 fields " + "/".join(
            str(v) for v in (self.fonds, self.category, self.year, self.retention, self.org, self.volume, self.item)
        )
        _check_fonds(shown, self.fonds)
        _check_category(shown, self.category)
        if not isinstance(self.year, int) or not YEAR_MIN <= self.year <= YEAR_MAX:
            _fail(shown, "year", f'"{self.year}" must be between {YEAR_MIN} and {YEAR_MAX}')
        _check_retention(shown, self.retention)
        if self.org is not None:
            _check_org(shown, self.org)
        if self.volume is not None and (not isinstance(self.volume, int) or not 1 <= self.volume <= 999):
            _fail(shown, "volume", f'"{self.volume}" must be 3 digits (001-999)')
        if not isinstance(self.item, int) or not 1 <= self.item <= 9999:
            _fail(shown, "item", f'"{self.item}" must be 4 digits (0001-9999)')

    def format(self, style: CodeStyle = DAT22) -> str:
        """The code written in ``style``: DA/T 22 ``C015-WS·2013-Y-BGS-0012``, DA/T 13 ``C015-WS·2013·Y·BGS-0012``."""
        levels = [str(self.year), self.retention] + ([self.org] if self.org else [])
        text = f"{self.fonds}{DASH}{self.category}{DOT}{style.level_sep.join(levels)}"
        if self.volume is not None:
            text += f"{DASH}{self.volume:03d}"
        return f"{text}{DASH}{self.item:04d}"

    def __str__(self) -> str:
        return self.format(DAT22)

    def path_parts(self) -> tuple[str, str, str]:
        """(fonds, category, year): the archive folder is data/archive/<fonds>/<category>/<year>/."""
        return (self.fonds, self.category, str(self.year))

    def master_stem(self, page: int, style: CodeStyle = DAT22) -> str:
        """The master file name without its extension: 档号 + ``-`` + 4-digit page serial (1-9999)."""
        if not 1 <= page <= 9999:
            raise ValueError(f"page {page} must be between 1 and 9999")
        return f"{self.format(style)}{DASH}{page:04d}"

    def master_name(self, page: int, ext: str, style: CodeStyle = DAT22) -> str:
        """DA/T 31-2017 master file name: 档号 + ``-`` + 4-digit page serial, e.g. ``C015-WS·2013-Y-BGS-0012-0001.tif``.

        ``ext`` may be given with or without its dot; ``page`` counts from 1 to 9999.
        """
        ext = ext.lstrip(".")
        if not ext:
            raise ValueError("a master file needs an extension")
        return f"{self.master_stem(page, style)}.{ext}"

    def sort_key(self) -> tuple[str, str, int, int, str, int, int]:
        """Archival order: fonds, category, year, retention (永久, 30年, 10年), org, volume, item.

        Use as ``sorted(codes, key=ArchivalCode.sort_key)``.
        """
        return (
            self.fonds,
            self.category,
            self.year,
            _RETENTION_RANK[self.retention],
            self.org or "",
            self.volume or 0,
            self.item,
        )


def _normalise(text: str) -> str:
    text = unicodedata.normalize("NFKC", text)
    text = "".join(text.split()).replace("\u200b", "").replace("\ufeff", "")
    return text.translate(_LOOKALIKES).upper()


def _fail(shown: str, part: str, problem: str) -> NoReturn:
    raise InvalidArchivalCode(f"{shown}: {_LABELS[part]} {problem}", part=part)


def _match(shown: str, part: str, token: str, pattern: re.Pattern[str], want: str) -> str:
    """The token if it is there and has its part's shape; otherwise the error naming that part."""
    if not token:
        _fail(shown, part, "missing")
    if not pattern.fullmatch(token):
        _fail(shown, part, f'"{token}" must be {want}')
    return token


def _check_fonds(shown: str, token: str) -> str:
    return _match(shown, "fonds", token, _FONDS, "1-8 letters or digits such as C015")


def _check_category(shown: str, token: str) -> str:
    return _match(shown, "category", token, _CATEGORY, "2-4 letters such as WS")


def _check_year(shown: str, token: str) -> int:
    year = int(_match(shown, "year", token, _YEAR, "4 digits"))
    if not YEAR_MIN <= year <= YEAR_MAX:
        _fail(shown, "year", f'"{token}" must be between {YEAR_MIN} and {YEAR_MAX}')
    return year


def _check_retention(shown: str, token: str) -> str:
    if not token:
        _fail(shown, "retention", "missing")
    if token not in RETENTIONS:
        hint = ""
        if token in ("C", "D"):
            hint = " (the older 长期 C and 短期 D are not accepted: re-appraise to Y, D30 or D10)"
        _fail(shown, "retention", f'"{token}" must be Y, D30 or D10{hint}')
    return token


def _check_org(shown: str, token: str) -> str:
    if not token:
        _fail(shown, "org", "missing")
    if not _ORG.fullmatch(token):
        hint = " (a 案卷号 (volume) is exactly 3 digits)" if token.isdigit() else ""
        _fail(shown, "org", f'"{token}" must be 1-8 letters or digits with at least one letter, such as BGS{hint}')
    return token


def _check_volume(shown: str, token: str) -> int:
    if not token:
        _fail(shown, "volume", "missing")
    if not _VOLUME.fullmatch(token) or token == "000":
        _fail(shown, "volume", f'"{token}" must be 3 digits (001-999)')
    return int(token)


def _check_item(shown: str, token: str) -> int:
    if not token:
        _fail(shown, "item", "missing")
    if not _ITEM.fullmatch(token) or token == "0000":
        _fail(shown, "item", f'"{token}" must be 4 digits (0001-9999)')
    return int(token)


def parse(text: str) -> ArchivalCode:
    """Read a 档号 in any accepted form (see the module docstring); raises InvalidArchivalCode naming the wrong part."""
    shown = f'档号 "{text.strip()}"'
    tokens = _SPLIT.split(_normalise(text))
    n = len(tokens)
    if n == 1 and not tokens[0]:
        _fail(shown, "code", f"is empty; expected {_SHAPE}")
    if n == 4:
        # Say which level is missing when the rest of the code is recognisable.
        if _CATEGORY.fullmatch(tokens[0]) and _YEAR.fullmatch(tokens[1]):
            _fail(shown, "fonds", f"missing; expected {_SHAPE}")
        if _VOLUME.fullmatch(tokens[2]):
            _fail(
                shown,
                "year",
                "missing: the 案卷 form is 全宗号-门类·年度-保管期限-案卷号-件号 such as C015-WS·2013-Y-001-0012",
            )
    if not 5 <= n <= 7:
        _fail(shown, "code", f"has {n} part{'s' if n != 1 else ''}, not 5 to 7; expected {_SHAPE}")

    fonds = _check_fonds(shown, tokens[0])
    category = _check_category(shown, tokens[1])
    year = _check_year(shown, tokens[2])
    retention = _check_retention(shown, tokens[3])
    org: str | None = None
    volume: int | None = None
    if n == 6:
        if _VOLUME.fullmatch(tokens[4]):
            volume = _check_volume(shown, tokens[4])
        else:
            org = _check_org(shown, tokens[4])
    elif n == 7:
        org = _check_org(shown, tokens[4])
        volume = _check_volume(shown, tokens[5])
    item = _check_item(shown, tokens[-1])
    return ArchivalCode(
        fonds=fonds, category=category, year=year, retention=retention, org=org, volume=volume, item=item
    )


def is_archival_code(text: str) -> bool:
    """Whether ``text`` (e.g. a batch folder name) is a valid 档号 in an accepted form."""
    try:
        parse(text)
    except InvalidArchivalCode:
        return False
    return True


def style_of(text: str) -> CodeStyle:
    """The style a written 档号 uses: DA/T 13 when its year and retention are joined by ``·``."""
    return DAT13 if re.search(rf"{DOT}[0-9]{{4}}{DOT}", _normalise(text)) else DAT22
