"""The search index an export's page reads in the browser, built here from the pages' text.

Its tokens are the station's own (:func:`scanner_service.archive.search.page_tokens`): every CJK character
a token, runs of other letters and digits a word, NFKC and lower case. The page's script (``app.js``)
reads text with the same rules, and a test holds the two to agreeing.

Terms: every token, and every two adjacent tokens joined by a space ("王 强"). A query part of one
token looks up that token; of two, their pair, which is then exact (a two-character name is found at
once); of three or more, each adjacent pair, and the page's text is then read to check the phrase.

Each term's pages are a sorted list of page numbers (0-based, in the export's order), written as the
gaps between them, each gap in base 32 with a digit alphabet that marks the gap's last digit: a gap
under 32 (a common term's) is one character. Terms are spread over shards by a 32-bit FNV-1a hash of
their code points, so a search loads only the one or two shards its terms are in.
"""

from __future__ import annotations

import json
from array import array
from collections.abc import Iterable

from scanner_service.archive.search import page_tokens

LAST = "0123456789abcdefghijklmnopqrstuv"  # a gap's last base-32 digit
MORE = "ABCDEFGHIJKLMNOPQRSTUVWXYZwxyz-_"  # any other of its digits
SHARD_BYTES = 256 * 1024  # the size a shard of the index aims at
TEXT_SHARD_PAGES = 40  # pages of text in one text shard


def encode_postings(pages: Iterable[int]) -> str:
    """Sorted, distinct page numbers as their gaps (the first from -1), base 32."""
    out: list[str] = []
    last = -1
    for page in pages:
        gap = page - last
        last = page
        digits = [LAST[gap & 31]]
        gap >>= 5
        while gap:
            digits.append(MORE[gap & 31])
            gap >>= 5
        out.extend(reversed(digits))
    return "".join(out)


def decode_postings(text: str) -> list[int]:
    """The page numbers :func:`encode_postings` wrote."""
    pages: list[int] = []
    last = -1
    value = 0
    for char in text:
        if char in MORE:
            value = value * 32 + MORE.index(char)
        else:
            last += value * 32 + LAST.index(char)
            pages.append(last)
            value = 0
    return pages


def term_hash(term: str) -> int:
    """32-bit FNV-1a over the term's code points (``app.js`` computes the same)."""
    value = 0x811C9DC5
    for char in term:
        value = ((value ^ ord(char)) * 0x01000193) & 0xFFFFFFFF
    return value


def terms_of_page(text: str) -> set[str]:
    """The terms a page is found by: each token and each pair of adjacent tokens."""
    tokens = [token[0] for token in page_tokens(text)]
    terms = set(tokens)
    terms.update(f"{a} {b}" for a, b in zip(tokens, tokens[1:], strict=False))
    return terms


class IndexBuilder:
    """Pages in, in the export's order; shards out."""

    def __init__(self) -> None:
        self._postings: dict[str, array[int]] = {}
        self.pages = 0

    def add_page(self, text: str | None) -> int:
        """Index the next page; its number."""
        page = self.pages
        self.pages += 1
        for term in terms_of_page(text or ""):
            postings = self._postings.get(term)
            if postings is None:
                postings = self._postings[term] = array("I")
            postings.append(page)
        return page

    def shards(self, target_bytes: int = SHARD_BYTES) -> list[dict[str, str]]:
        """The index in shards of about ``target_bytes`` each: term → encoded pages. The shard of a term
        is ``term_hash(term) % len(shards)``."""
        encoded = {term: encode_postings(pages) for term, pages in self._postings.items()}
        size = sum(len(term.encode()) + len(pages) + 6 for term, pages in encoded.items())
        count = max(1, min(4096, -(-size // target_bytes)))
        shards: list[dict[str, str]] = [{} for _ in range(count)]
        for term in sorted(encoded):
            shards[term_hash(term) % count][term] = encoded[term]
        return shards


def script(kind: str, number: int, data: object) -> str:
    """A data file the page loads with a ``<script>`` tag (``fetch`` is refused on file://)."""
    return f"SS.shard({json.dumps(kind)},{number},{json.dumps(data, ensure_ascii=False, separators=(',', ':'))});\n"
