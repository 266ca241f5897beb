"""The scale benchmark's summary: blocks of pages, the flatness verdict and the page accounting (no timing)."""

from __future__ import annotations

from bench.blocks import account_pages, pages_ok, split_blocks, verdict
from bench.memory import MIB, Sample

WORKERS = (101, 102)


def _steady(pages: int, seconds_per_page: float = 1.0, start: float = 5.0) -> list[float]:
    return [start + i * seconds_per_page for i in range(pages)]


def _memory(until: float, rss_mib: float, grow_mib: float = 0.0, pid: int = WORKERS[0]) -> list[Sample]:
    """A sample a second, the worker's memory growing linearly by ``grow_mib`` over the run."""
    steps = int(until) + 1
    samples = []
    for t in range(steps):
        rss = int((rss_mib + grow_mib * t / until) * MIB)
        samples.append(Sample(float(t), pid, rss, rss // 2 if t % 2 == 0 else None, rss // 3))
    return samples


def test_blocks_in_finish_order_with_a_partial_last_block() -> None:
    finished = list(reversed(_steady(65)))  # the order of the catalogue does not matter
    blocks = split_blocks(finished, 20)
    ranges = [(b.first, b.last, b.full) for b in blocks]
    assert ranges == [(1, 20, True), (21, 40, True), (41, 60, True), (61, 65, False)]
    # Block 1 from its own first page (start-up apart), the others from the previous block's last page.
    assert [b.seconds_per_page for b in blocks] == [1.0, 1.0, 1.0, 1.0]
    assert blocks[0].start == 5.0 and blocks[1].start == blocks[0].end


def test_steady_run_is_flat() -> None:
    finished = _steady(60)
    samples = _memory(65, 800) + _memory(65, 700, pid=WORKERS[1])
    result = verdict(split_blocks(finished, 20, samples))
    assert (result.first_block, result.last_block) == (1, 3)
    assert result.time_flat and result.memory_flat and result.flat
    assert set(result.memory) == set(WORKERS)


def test_slower_last_block_is_not_flat() -> None:
    finished = _steady(40) + [44 + (i + 1) * 1.3 for i in range(20)]  # 30 % slower at the end
    result = verdict(split_blocks(finished, 20, _memory(75, 800)))
    assert result.time is not None and round(result.time.change, 2) == 0.3
    assert result.time_flat is False and result.flat is False
    assert result.memory_flat is True


def test_memory_growth_beyond_ten_percent_and_fifty_mib_is_not_flat() -> None:
    finished = _steady(60)
    grown = verdict(split_blocks(finished, 20, _memory(65, 200, grow_mib=120)))
    rss = grown.memory[WORKERS[0]][0]
    assert rss.figure == "rss_peak" and rss.last - rss.first > 50 * MIB and rss.change > 0.10
    assert grown.memory_flat is False and grown.flat is False
    # More than 10 % but within the 50 MiB floor: flat.
    small = verdict(split_blocks(finished, 20, _memory(65, 200, grow_mib=60)))
    rss = small.memory[WORKERS[0]][0]
    assert rss.last - rss.first < 50 * MIB and rss.change > 0.10
    assert small.memory_flat is True


def test_worker_missing_from_the_last_block_is_not_flat() -> None:
    finished = _steady(60)
    samples = _memory(65, 800) + [s for s in _memory(65, 700, pid=WORKERS[1]) if s.at < 20]
    result = verdict(split_blocks(finished, 20, samples))
    assert result.missing_workers == [WORKERS[1]] and result.memory_flat is False


def test_too_few_pages_to_compare() -> None:
    result = verdict(split_blocks(_steady(30), 20, _memory(40, 800)))
    assert result.flat is None and result.time is None


def _page(seq: int, file: str, state: str = "done", blank: bool = False) -> dict[str, object]:
    return {"seq": seq, "state": state, "blank": blank, "flags": ["blank"] if blank else [], "source_file": file}


def test_pages_accounted_for() -> None:
    files = ["scan_0001.jpg", "scan_0002.jpg", "scan_0003.tif"]
    pages = [_page(1, files[0]), _page(2, files[1], blank=True), _page(3, files[2])]
    account = account_pages(files, pages, pdf_pages=2)
    assert account["done"] == 2 and account["blank"] == 1 and account["pdf_plus_left_out"] == 3
    assert pages_ok(account)


def test_lost_doubled_and_missing_from_pdf_pages_are_caught() -> None:
    files = ["scan_0001.jpg", "scan_0002.jpg", "scan_0003.tif"]
    lost = account_pages(files, [_page(1, files[0]), _page(2, files[1])], pdf_pages=2)
    assert lost["lost"] == ["scan_0003.tif"] and not pages_ok(lost)
    doubled = account_pages(files, [_page(1, files[0]), _page(1, files[1]), _page(3, files[2])], pdf_pages=3)
    assert not doubled["seq_each_once"] and not pages_ok(doubled)
    short_pdf = account_pages(files, [_page(1, files[0]), _page(2, files[1]), _page(3, files[2])], pdf_pages=2)
    assert short_pdf["pdf_expected"] == 3 and not pages_ok(short_pdf)
    failed = account_pages(files, [_page(1, files[0]), _page(2, files[1], "failed"), _page(3, files[2])], pdf_pages=2)
    assert failed["failed"] == 1 and not pages_ok(failed)
