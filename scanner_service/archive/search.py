"""Full-text search over page texts, Chinese included, on SQLite FTS5 and on PostgreSQL.

Chinese has no spaces, and both engines' tokenizers (FTS5 ``unicode61``, PostgreSQL's ``simple`` parser) would
take a run of Chinese characters as one word, so 王强 inside a line would never be found. So the indexed form of
a page (``SearchEntry.terms``, see :func:`terms_of`) has every CJK character as its own token, and a query part
is searched as a phrase of adjacent tokens: 王强 → the phrase "王 强".

The indexed form holds nothing but tokens of letters and digits separated by single spaces: every punctuation
mark, hyphen, colon, quote, … is a separator before either engine sees the text. That is what makes the two
engines agree (PostgreSQL's parser would otherwise make hyphenated words, hosts, signed numbers, file paths out
of ``2013-05-01`` or ``no.3``), and what makes query text harmless: a query is reduced to the same tokens, so no
quote, ``*``, ``NEAR``, ``-`` or parenthesis ever reaches FTS5's query syntax, and the tokens are bound as SQL
parameters, never written into the SQL.

SQLite matches phrases in FTS5 and ranks by bm25(). PostgreSQL asks its GIN index for the pages holding every
token and checks adjacency on the spaced text, because checking a phrase in the index itself means parsing
each candidate page again (see :func:`_postgres_match`).
"""

from __future__ import annotations

import bisect
import html
import unicodedata
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from typing import Any

from sqlalchemy import (
    CTE,
    ColumnElement,
    Float,
    Integer,
    Row,
    and_,
    bindparam,
    cast,
    column,
    func,
    literal,
    literal_column,
    select,
    table,
)
from sqlalchemy import text as sql
from sqlalchemy.orm import Session

from scanner_service.archive.models import Item, SearchEntry
from scanner_service.exceptions import ScanstationError

MAX_QUERY_CHARS = 200
MAX_WORD_CHARS = 100  # PostgreSQL drops words over 2047 bytes from a tsvector: long runs are cut into pieces
MAX_LIMIT = 500

# Code points that are a token each: CJK ideographs (with 〇 and the Suzhou numerals), kana, bopomofo and
# Hangul. Each range is (first, last), sorted, so a lookup is one bisect.
_CJK_RANGES: tuple[tuple[int, int], ...] = (
    (0x1100, 0x11FF),  # Hangul jamo
    (0x3005, 0x3007),  # 々 〆 〇
    (0x3021, 0x3029),  # Suzhou numerals 〡…〩
    (0x3038, 0x303B),
    (0x3040, 0x30FF),  # hiragana, katakana
    (0x3100, 0x312F),  # bopomofo
    (0x3130, 0x318F),  # Hangul compatibility jamo
    (0x31A0, 0x31BF),  # bopomofo extended
    (0x31F0, 0x31FF),  # katakana phonetic extensions
    (0x3400, 0x4DBF),  # CJK extension A
    (0x4E00, 0x9FFF),  # CJK unified ideographs
    (0xA960, 0xA97F),  # Hangul jamo extended-A
    (0xAC00, 0xD7FF),  # Hangul syllables, jamo extended-B
    (0xF900, 0xFAFF),  # CJK compatibility ideographs (the few NFKC leaves alone)
    (0x16FE0, 0x16FFF),
    (0x1B000, 0x1B16F),  # kana supplement, extended
    (0x20000, 0x323AF),  # CJK extensions B–H and the compatibility supplement
)
_CJK_STARTS = [first for first, _ in _CJK_RANGES]


class BadQuery(ScanstationError):
    """A search query that cannot be searched: nothing searchable in it, or too long."""

    code = "bad_query"
    http_status = 422


@dataclass
class Hit:
    """One page that matches: a filed item's page (``item_id``) or a batch's page not filed yet (``batch_id``)."""

    entry_id: int
    item_id: int | None
    batch_id: int | None
    page_no: int
    fonds: str | None
    category: str | None
    year: int | None
    snippet: str


@dataclass
class SearchResult:
    total: int
    hits: list[Hit]


# A token: its normalised text (NFKC, lower case) and its span in the original text, so a snippet can mark the
# original characters. A plain tuple: a page makes hundreds, and a NamedTuple would double the time to index it.
_Token = tuple[str, int, int]


def _is_cjk(char: str) -> bool:
    code = ord(char)
    i = bisect.bisect_right(_CJK_STARTS, code) - 1
    return i >= 0 and code <= _CJK_RANGES[i][1]


def page_tokens(text: str) -> list[_Token]:
    """The tokens of ``text`` with where each came from: one per CJK character, one per run of other letters
    and digits (cut every MAX_WORD_CHARS); everything else separates.

    Normalised a character at a time (NFKC, then lower case), a character together with the combining marks
    that follow it, so every token keeps its span in the original text; the index, the query and the snippet
    all use this one function, so they cannot disagree on what a token is.
    """
    tokens: list[_Token] = []
    word: list[str] = []  # the letters and digits of the word being read
    word_start = word_end = 0

    def end_word() -> None:
        if word:
            tokens.append(("".join(word), word_start, word_end))
            word.clear()

    combining = unicodedata.combining
    i, n = 0, len(text)
    while i < n:
        char = text[i]
        j = i + 1
        if j < n and text[j] >= "\u0300" and combining(text[j]):
            while j < n and combining(text[j]):
                j += 1
            normal = unicodedata.normalize("NFKC", text[i:j]).lower()
        elif "\u4e00" <= char <= "\u9fff":
            # Fast path, most of a page: the common Chinese characters have no NFKC mapping and no case.
            end_word()
            tokens.append((char, i, j))
            i = j
            continue
        elif char.isascii():
            normal = char.lower()  # ASCII is NFKC already
        else:
            normal = unicodedata.normalize("NFKC", char).lower()
        for c in normal:
            if c.isalnum():
                if _is_cjk(c):
                    end_word()
                    tokens.append((c, i, j))
                else:
                    if not word:
                        word_start = i
                    word.append(c)
                    word_end = j
                    if len(word) >= MAX_WORD_CHARS:
                        end_word()
            elif not unicodedata.category(c).startswith("M"):
                # A combining mark NFKC could not compose (the dot of İ lower-cased) is left out, not a break:
                # FTS5 would keep it inside the word and PostgreSQL would split there.
                end_word()
        i = j
    end_word()
    return tokens


def terms_of(text: str) -> str:
    """The form of ``text`` the full-text index sees (``SearchEntry.terms``): tokens separated by one space.

    Every CJK character is a token of its own; runs of other letters and digits are words, lower case; all
    else (punctuation, CJK punctuation, symbols, line breaks) only separates. Full-width forms are folded by
    NFKC: ``王强，身份证号１１０１０５１９４９１２３１００２Ｘ　2013-05-01`` →
    ``王 强 身 份 证 号 11010519491231002x 2013 05 01``.
    """
    return " ".join(token[0] for token in page_tokens(text))


def new_entry(
    text: str,
    *,
    page_no: int,
    item_id: int | None = None,
    batch_id: int | None = None,
    fonds: str | None = None,
    category: str | None = None,
    year: int | None = None,
) -> SearchEntry:
    """A search entry for one page's text; the caller adds it to its session.

    Give an item's page its item's fonds, category and year: the search filters read them from the entry, so
    a batch's page that is not filed yet can be filtered too.
    """
    return SearchEntry(
        item_id=item_id,
        batch_id=batch_id,
        page_no=page_no,
        fonds=fonds,
        category=category,
        year=year,
        text=text,
        terms=terms_of(text),
    )


def _phrases(query: str) -> list[tuple[str, ...]]:
    """One phrase (its tokens, in order) per whitespace-separated part of ``query``; duplicates and parts with
    nothing searchable left out."""
    phrases: list[tuple[str, ...]] = []
    for part in query.split():  # str.split() also splits at the ideographic space U+3000
        phrase = tuple(token[0] for token in page_tokens(part))
        if phrase and phrase not in phrases:
            phrases.append(phrase)
    return phrases


def _parse_query(query: str) -> list[tuple[str, ...]]:
    query = query.strip()
    if len(query) > MAX_QUERY_CHARS:
        raise BadQuery(f"The search text is too long ({len(query)} characters); at most {MAX_QUERY_CHARS} please.")
    phrases = _phrases(query)
    if not phrases:
        raise BadQuery("Nothing to search for: type a word, a name or a number (punctuation alone is not searched).")
    return phrases


def _fts5_match(phrases: list[tuple[str, ...]]) -> str:
    """An FTS5 query: the phrases in double quotes, side by side (FTS5's implicit AND).

    Tokens are letters and digits only, so they cannot hold a quote; doubling quotes anyway keeps this safe
    even if that ever changed.
    """
    return " ".join('"' + " ".join(phrase).replace('"', '""') + '"' for phrase in phrases)


def _sqlite_matches(phrases: list[tuple[str, ...]]) -> CTE:
    """The FTS5 matches as a CTE of (id, rank), rank from bm25(): smaller is better.

    Matched apart, in a MATERIALIZED CTE: next to a filter on search_entries (fonds = ?), SQLite's planner
    walks the fonds index and runs the full-text query once per row, a hundred times slower.
    """
    fts = table("search_fts", column("rowid", Integer))
    fts_table: ColumnElement[Any] = literal_column("search_fts")
    return (
        select(fts.c.rowid.label("id"), func.bm25(fts_table).label("rank"))
        .where(fts_table.op("MATCH", is_comparison=True)(bindparam("fts_query", _fts5_match(phrases))))
        .cte("fts_matches")
        .prefix_with("MATERIALIZED")
    )


def _postgres_match(phrases: list[tuple[str, ...]]) -> tuple[ColumnElement[bool], ColumnElement[Any]]:
    """(the condition on search_entries, a relevance score: larger is better) for PostgreSQL.

    The index holds no positions a query can use without parsing the page again: to check a phrase
    (phraseto_tsquery, ``<->``) PostgreSQL re-runs to_tsvector on every page holding all its tokens, and
    ts_rank() on every match; over 20,000 pages that took 1.3 s for 王强 and 8 s for 的. So the GIN index is
    asked only for pages with every token (an AND query, which it answers without recheck), and adjacency is
    checked on the text: ``terms`` is tokens joined by single spaces, so the phrase 王 强 is in a page exactly
    when " 王 强 " is in " " + terms + " ". Relevance is how often the phrases occur against the page's length,
    counted on the same text.
    """
    # The same expression as the GIN index (migration 0002), the configuration written as a literal and not
    # bound, so the planner can match it to the index.
    simple: ColumnElement[Any] = literal_column("'simple'::regconfig")
    vector = func.to_tsvector(simple, SearchEntry.terms)
    every_token = func.plainto_tsquery(simple, bindparam("tokens", " ".join(" ".join(p) for p in phrases)))
    condition: ColumnElement[bool] = vector.op("@@", is_comparison=True)(every_token)
    padded = literal(" ") + SearchEntry.terms + literal(" ")
    occurrences: ColumnElement[Any] = literal(0.0, Float)
    for phrase in phrases:
        needle = f" {' '.join(phrase)} "
        if len(phrase) > 1:
            condition = and_(condition, padded.contains(needle, autoescape=True))
        removed = func.char_length(padded) - func.char_length(func.replace(padded, needle, ""))
        occurrences = occurrences + cast(removed, Float) / float(len(needle))
    # Occurrences against the page's length, damped by a typical page (600 characters: 2400 of terms) so a
    # short scrap with one mention does not outrank a page that names it five times.
    score = occurrences / (func.char_length(SearchEntry.terms) + 2400.0)
    return condition, score


@contextmanager
def _index_first(session: Session) -> Iterator[None]:
    """On PostgreSQL, keep the planner on the GIN index even for a token on most pages.

    The planner takes to_tsvector() for cheap and, when most pages match (村, 的), reads the whole table
    instead, parsing every page's terms again: 4 s instead of 0.03 s over 20,000 pages. The setting is
    local to the transaction and put back afterwards (after an error the rollback puts it back).
    """
    before = session.execute(sql("SELECT current_setting('enable_seqscan')")).scalar_one()
    session.execute(sql("SELECT set_config('enable_seqscan', 'off', true)"))
    yield
    session.execute(sql("SELECT set_config('enable_seqscan', :before, true)"), {"before": before})


def search(
    session: Session,
    query: str,
    *,
    where: ColumnElement[bool] | None = None,
    fonds: str | None = None,
    category: str | None = None,
    year: int | None = None,
    limit: int = 20,
    offset: int = 0,
) -> SearchResult:
    """The pages whose text matches ``query``, best first, then in item and page order.

    Each whitespace-separated part of the query must appear in the page as it is (its characters adjacent,
    line breaks, spaces and punctuation between them aside): ``王强 1998`` finds pages with 王强 and 1998.
    ``where`` is the caller's extra condition (permissions); it may use columns of SearchEntry and of Item (a
    batch's page has no item: Item's columns are NULL there). ``fonds``, ``category`` and ``year`` filter on
    the entry's own. ``total`` counts every match under the same conditions; ``hits`` is one page of them
    (``limit`` at most MAX_LIMIT), each with a snippet.

    Raises BadQuery when the query is empty, only punctuation, or longer than MAX_QUERY_CHARS.
    """
    phrases = _parse_query(query)
    limit = max(0, min(limit, MAX_LIMIT))
    offset = max(0, offset)
    sqlite = session.get_bind().dialect.name == "sqlite"

    # Every match with what it is sorted by, `cost` first (smaller is better), in a MATERIALIZED CTE: then one
    # pass both counts and sorts them, and neither carries the pages' text (spilling the sort to disk).
    conditions: list[ColumnElement[bool]] = []
    cost: ColumnElement[Any]
    if sqlite:
        fts = _sqlite_matches(phrases)
        cost = fts.c.rank
        matches = select().select_from(fts).join(SearchEntry, SearchEntry.id == fts.c.id)
    else:
        match, score = _postgres_match(phrases)
        conditions.append(match)
        cost = -score
        matches = select().select_from(SearchEntry)
    if fonds is not None:
        conditions.append(SearchEntry.fonds == fonds)
    if category is not None:
        conditions.append(SearchEntry.category == category)
    if year is not None:
        conditions.append(SearchEntry.year == year)
    if where is not None:
        conditions.append(where)
    ranked = (
        matches.add_columns(
            SearchEntry.id, SearchEntry.item_id, SearchEntry.batch_id, SearchEntry.page_no, cost.label("cost")
        )
        .outerjoin(Item, Item.id == SearchEntry.item_id)
        .where(*conditions)
        .cte("ranked")
        .prefix_with("MATERIALIZED")
    )

    with nullcontext() if sqlite else _index_first(session):
        rows: Sequence[Row[Any]] = ()
        if limit:
            rows = session.execute(
                select(ranked.c.id, func.count().over().label("total"))
                .order_by(
                    ranked.c.cost,
                    ranked.c.item_id.asc().nulls_last(),
                    ranked.c.batch_id.asc().nulls_last(),
                    ranked.c.page_no,
                    ranked.c.id,
                )
                .limit(limit)
                .offset(offset)
            ).all()
        if rows:
            total = rows[0].total
        elif limit and not offset:
            total = 0
        else:  # no rows asked for, or a page past the end: count apart
            total = session.execute(select(func.count()).select_from(ranked)).scalar_one()
    return SearchResult(total=total, hits=_hits(session, [row.id for row in rows], phrases))


def _hits(session: Session, ids: list[int], phrases: list[tuple[str, ...]]) -> list[Hit]:
    """The hits for these entries, in this order, each with its snippet."""
    if not ids:
        return []
    rows = session.execute(
        select(
            SearchEntry.id,
            SearchEntry.item_id,
            SearchEntry.batch_id,
            SearchEntry.page_no,
            SearchEntry.fonds,
            SearchEntry.category,
            SearchEntry.year,
            SearchEntry.text,
        ).where(SearchEntry.id.in_(ids))
    )
    found = {row.id: row for row in rows}
    return [
        Hit(
            entry_id=row.id,
            item_id=row.item_id,
            batch_id=row.batch_id,
            page_no=row.page_no,
            fonds=row.fonds,
            category=row.category,
            year=row.year,
            snippet=_snippet(row.text, phrases),
        )
        for row in (found[entry_id] for entry_id in ids)
    ]


def snippet(text: str, query: str, *, width: int = 40) -> str:
    """A piece of the page's original text around the first match of ``query``, as HTML: the matched parts in
    ``<mark>…</mark>``, all else escaped, "…" where the text was cut.

    A match is found as the index finds it, so it runs across line breaks, spaces and punctuation between the
    characters (OCR often puts spaces between Chinese characters). About ``width`` characters are kept on each
    side of the match. White space is shown as one space, and none at all between two Chinese characters (a
    line break inside a Chinese sentence is no space). With no match, the beginning of the text is shown.
    """
    return _snippet(text, _phrases(query.strip()[:MAX_QUERY_CHARS]), width=width)


def _snippet(text: str, phrases: list[tuple[str, ...]], *, width: int = 40) -> str:
    tokens = page_tokens(text)
    words = [token[0] for token in tokens]
    spans: list[tuple[int, int]] = []
    for phrase in phrases:
        n = len(phrase)
        spans += [
            (tokens[i][1], tokens[i + n - 1][2])
            for i in range(len(tokens) - n + 1)
            if words[i] == phrase[0] and tuple(words[i : i + n]) == phrase
        ]
    spans.sort()
    first = spans[0] if spans else (0, 0)

    # Widen the window by `width` characters that show (white space does not count) on each side.
    lo, shown = first[0], 0
    while lo > 0 and shown < width:
        lo -= 1
        shown += not text[lo].isspace()
    hi, shown = first[1], 0
    if not spans:
        width *= 2  # no match to centre on: show a piece twice as long from the start
    while hi < len(text) and shown < width:
        shown += not text[hi].isspace()
        hi += 1

    merged: list[list[int]] = []
    for start, end in spans:
        start, end = max(start, lo), min(end, hi)
        if start >= end:
            continue
        if merged and start <= merged[-1][1]:
            merged[-1][1] = max(merged[-1][1], end)
        else:
            merged.append([start, end])

    out: list[str] = []
    marks = {start: "<mark>" for start, _ in merged} | {end: "</mark>" for _, end in merged}
    i = lo
    while i < hi:
        if i in marks:
            out.append(marks[i])
        if text[i].isspace():
            j = i
            while j < hi and text[j].isspace() and (j == i or j not in marks):
                j += 1
            before = text[i - 1] if i > lo else ""
            after = text[j] if j < hi else ""
            if before and after and not (_is_wide(before) and _is_wide(after)):
                out.append(" ")
            i = j
            continue
        out.append(html.escape(text[i]))
        i += 1
    if hi in marks:
        out.append(marks[hi])
    body = "".join(out)
    return ("…" if lo > 0 else "") + body + ("…" if hi < len(text) else "")


def _is_wide(char: str) -> bool:
    """A character set in a full-width cell (Chinese characters, CJK punctuation): no space belongs between two."""
    return unicodedata.east_asian_width(char) in ("W", "F")
