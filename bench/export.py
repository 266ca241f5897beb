"""``python -m bench export``: the offline export's search at scale, and its index against the PDFs.

1. A real station files a synthetic batch (make_corpus.py pages, OCR and all) under a 档号, and
   ``export_archive`` exports it: the PDF bytes a page takes, and the index and text bytes a page takes
   with the station's own OCR text.
2. A volume of ``--pages`` pages (20,000 by default) of make_corpus.py's page texts, written by the same
   code (``site.write_volume``; no PDFs copied: the search does not read them), is opened from file://
   in Debian's chromium with no network, and searched the way a villager does (typed, Enter) for names
   on a few pages, an ID number, a common phrase and a common character. Each query is timed from
   Enter to its first results on screen, on a freshly opened page (nothing loaded yet) and again.

See bench/README.md.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import random
import re
import shutil
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from bench import tools
from bench.run import RESULTS, machine, write_results
from bench.station import run_station

FILED_CODE = "C015-WS·2013-Y-BGS-0001"
CHROMIUM = "/usr/bin/chromium"
ITEM_PAGES = (1, 12)  # pages an item of the synthetic volume has, at random between these
TARGET_MS = 500


def _make_corpus_module() -> Any:
    path = tools.shared_dir() / "tools" / "make_corpus.py"
    spec = importlib.util.spec_from_file_location("make_corpus", path)
    if spec is None or spec.loader is None:
        raise tools.BenchError(f"{path} is missing: put shared/ beside the repository or set SCANSTATION_SHARED.")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def real_pages(work: Path, pages: int, seed: int) -> dict[str, Any]:
    """File ``pages`` synthetic pages through a real station and export them: bytes per page."""
    from scanner_service.archive.access import Caller
    from scanner_service.archive.export import ExportSpec, export_archive
    from scanner_service.archive.models import Role
    from scanner_service.settings import build_settings

    corpus = work / "corpus"
    tools.make_corpus(corpus, pages, seed)
    # Blank sheets left out: a batch with a blank to review is not filed until a person accepts it.
    truth = json.loads((corpus / "truth.json").read_text(encoding="utf-8"))
    shots = [corpus / "pages" / page["file"] for page in truth if not page["blank"]]
    run = run_station(work / "station", shots, 2, name=FILED_CODE)
    settings = build_settings(data=run.data, inbox=work / "station" / "inbox")
    # An item made by a batch's name has no 开放标识 yet, so it is restricted: named, it goes in.
    spec = ExportSpec(items=(FILED_CODE,), include_restricted=True)
    report = export_archive(settings, Caller("bench", Role.admin), spec, work / "export")
    if not report.pages:
        raise tools.BenchError(f"the station filed none of the pages (batch {run.batch.get('state')}): see {work}")
    files = [p for p in report.folder.rglob("*") if p.is_file()]
    pdf = sum(p.stat().st_size for p in files if p.suffix == ".pdf")
    index = sum(p.stat().st_size for p in files if p.parent.name in ("index", "text"))
    return {
        "pages_filed": report.pages,
        "pdf_bytes_per_page": pdf / max(report.pages, 1),
        "index_text_bytes_per_page": index / max(report.pages, 1),
        "index_share_of_pdf": index / pdf if pdf else None,
    }


def synthetic_volume(folder: Path, pages: int, seed: int, pdf_bytes_per_page: float) -> dict[str, Any]:
    """A volume of ``pages`` pages of make_corpus.py texts in items of 1–12 pages; what it holds."""
    from scanner_service.archive.export import site

    rng = random.Random(seed)
    texts = _make_corpus_module().texts_for(pages, rng)
    items: list[site.ExportItem] = []
    at = 0
    while at < pages:
        n = min(rng.randint(*ITEM_PAGES), pages - at)
        number = len(items) + 1
        year = 1998 + number % 16
        code = f"C015-WS·{year}-Y-{number:04d}"
        first_line = texts[at].splitlines()[0]
        items.append(
            site.ExportItem(
                archival_code=code,
                code_key=code,
                fonds="C015",
                fonds_name="东部风景社区",
                category="WS",
                year=year,
                description={"title": f"{first_line}（{number}）", "retention": "Y", "pages": n},
                pdf=folder / "missing.pdf",
                pdf_sha256="",
                pdf_size=int(pdf_bytes_per_page * n),
                texts=texts[at : at + n],
                volume=1,
            )
        )
        at += n
    volume = site.Volume(folder, 1)
    items.sort(key=lambda i: (i.year, i.archival_code))
    started = time.perf_counter()
    meta = {
        "title": "基准 档案（离线查阅版）",
        "export_id": 0,
        "made_at": "bench",
        "made_by": "bench",
        "recipient": None,
    }
    site.write_volume(volume, items, items, meta, 1)
    seconds = time.perf_counter() - started
    index = sum(d.size for rel, d in volume.files.items() if rel.startswith("data/index/"))
    text = sum(d.size for rel, d in volume.files.items() if rel.startswith("data/text/"))
    return {
        "pages": pages,
        "items": len(items),
        "chars": sum(len(t) for t in texts),
        "index_bytes": index,
        "text_bytes": text,
        "catalogue_bytes": volume.files["data/catalogue.js"].size,
        "index_shards": sum(1 for rel in volume.files if rel.startswith("data/index/")),
        "build_seconds": seconds,
        "queries": _queries(texts, rng),
    }


def _queries(texts: list[str], rng: random.Random) -> dict[str, str]:
    """What a villager types: a name on few pages (two characters, three), an ID number, a phrase on most
    pages, one common character."""
    names: dict[str, int] = {}
    for text in texts:
        for name in set(re.findall(r"承包方代表：(\w{2,3})，", text)):
            names[name] = names.get(name, 0) + 1
    rare2 = sorted(n for n, c in names.items() if len(n) == 2 and 1 <= c <= 20)
    rare3 = sorted(n for n, c in names.items() if len(n) == 3 and 1 <= c <= 5)
    ids = re.findall(r"\d{17}[\dX]", texts[len(texts) // 2])
    return {
        "two-character name": rng.choice(rare2),
        "three-character name": rng.choice(rare3),
        "ID number": ids[0],
        "common phrase": "土地承包",
        "common character": "王",
    }


def time_searches(folder: Path, queries: dict[str, str], repeat: int) -> dict[str, Any]:
    """Each query typed into the page opened from file:// with no network: ms to its first results, on a
    fresh page (cold: its index shards not loaded) and then again on the same page (warm)."""
    from playwright.sync_api import sync_playwright

    out: dict[str, Any] = {}
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox", "--disable-gpu"])
        try:
            for label, query in queries.items():
                cold, warm, answer = [], [], ""
                for _ in range(repeat):
                    context = browser.new_context(viewport={"width": 1366, "height": 768}, offline=True)
                    page = context.new_page()
                    page.goto((folder / "index.html").as_uri())
                    page.wait_for_selector("#main table")
                    for into in (cold, warm):
                        page.evaluate(
                            "() => { const s = document.querySelector('#search-summary'); if (s) s.remove(); }"
                        )
                        started = time.perf_counter()
                        page.fill("#q", query)
                        page.press("#q", "Enter")
                        page.wait_for_selector("#search-summary[data-ms]", timeout=60_000)
                        into.append((time.perf_counter() - started) * 1000)
                        answer = page.inner_text("#search-summary")
                        page.evaluate("() => { location.hash = '#/'; }")
                        page.wait_for_selector("#main table")
                    context.close()
                out[label] = {
                    "query": query,
                    "cold_ms": statistics.median(cold),
                    "warm_ms": statistics.median(warm),
                    "cold_max_ms": max(cold),
                    "answer": answer,
                }
        finally:
            browser.close()
    return out


def report(raw: dict[str, Any]) -> str:
    syn, real, searches = raw["synthetic"], raw.get("real"), raw["searches"]
    lines = [
        "# Offline export: search at scale, index size",
        "",
        f"{raw['machine']['date']}, {raw['machine']['cpus']} CPUs; chromium from file://, no network.",
        "",
        f"Volume: {syn['pages']:,} pages in {syn['items']:,} items, {syn['chars']:,} characters of text; "
        f"built in {syn['build_seconds']:.1f} s.",
        "",
        "| query | typed | cold (ms) | warm (ms) | worst cold (ms) | answer |",
        "|---|---|--:|--:|--:|---|",
    ]
    worst = 0.0
    for label, row in searches.items():
        worst = max(worst, row["cold_max_ms"])
        lines.append(
            f"| {label} | {row['query']} | {row['cold_ms']:.0f} | {row['warm_ms']:.0f} | {row['cold_max_ms']:.0f} "
            f"| {row['answer'].split('。')[0]} |"
        )
    per_page = (syn["index_bytes"] + syn["text_bytes"]) / syn["pages"]
    lines += [
        "",
        f"Index {syn['index_bytes'] / 1e6:.1f} MB in {syn['index_shards']} shards, "
        f"text {syn['text_bytes'] / 1e6:.1f} MB, catalogue {syn['catalogue_bytes'] / 1e6:.2f} MB: "
        f"{per_page:,.0f} bytes a page.",
    ]
    if real:
        share = per_page / real["pdf_bytes_per_page"]
        lines += [
            f"The station's PDFs ({real['pages_filed']} synthetic pages filed by a real station, same run): "
            f"{real['pdf_bytes_per_page']:,.0f} bytes a page; index and text there "
            f"{real['index_text_bytes_per_page']:,.0f} bytes a page ({real['index_share_of_pdf']:.1%} of the PDFs).",
            f"At {syn['pages']:,} pages the index and text are {share:.1%} of the PDFs' size.",
        ]
    verdict = "PASS" if worst < TARGET_MS else "MISS"
    lines += ["", f"Target: every search under {TARGET_MS} ms (worst cold {worst:.0f} ms): {verdict}."]
    return "\n".join(lines) + "\n"


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench export", description=__doc__.splitlines()[0])
    parser.add_argument("--pages", type=int, default=20_000, help="pages in the searched volume")
    parser.add_argument("--real-pages", type=int, default=16, help="pages filed by a real station (0: skip)")
    parser.add_argument("--seed", type=int, default=2026)
    parser.add_argument("--repeat", type=int, default=3, help="times each query is timed")
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument("--keep", action="store_true", help="keep the work folder")
    args = parser.parse_args(argv)
    work = Path(tempfile.mkdtemp(prefix="bench-export-"))
    try:
        raw: dict[str, Any] = {"machine": machine()}
        per_page = 40_000.0
        if args.real_pages:
            tools.log(f"filing {args.real_pages} pages through a real station")
            raw["real"] = real_pages(work / "real", args.real_pages, args.seed)
            per_page = raw["real"]["pdf_bytes_per_page"]
        tools.log(f"writing a volume of {args.pages:,} pages")
        raw["synthetic"] = synthetic_volume(work / "volume", args.pages, args.seed, per_page)
        tools.log("searching it in chromium")
        raw["searches"] = time_searches(work / "volume", raw["synthetic"].pop("queries"), args.repeat)
        text = report(raw)
        print(text)
        write_results(args.out, text, raw, stem="export")
        return 0
    finally:
        if args.keep:
            tools.log(f"kept {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)
