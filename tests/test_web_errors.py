"""Every error the API can answer a person with is said in Chinese by the web page (ui.js ERRORS and REASONS),
not as 操作未完成 or 工作站内部出错 with an English sentence: a full archive disk or a damaged file is something
an operator can act on, once it is named."""

from __future__ import annotations

import re
from pathlib import Path

from scanner_service.api.routes.web import STATIC

ROOT = Path(__file__).resolve().parents[1]

# Codes no request of the web page can meet: the CLI's start-up and passwords, intake of the inbox (shown on
# the board by the batch's own problem words, batches.js PROBLEM), PDF building, checks of API clients, and
# the transfer and its receipt (command line only).
NOT_FOR_THE_PAGE = {
    "running", "redis_in_use", "port_in_use", "password_mismatch",  # scanstation up / user passwd
    "broken", "symlink", "missing", "unreadable", "multipage", "bad_dpi", "bad_image", "bad_text",  # intake, pdfa
    "file_in_the_way", "bad_engine", "bad_since", "bad_last_event_id", "empty_body", "station_busy",
    "missing_program", "config", "error", "transient",
    "bag_invalid", "transfer_failed", "nothing_to_transfer", "already_filed_otherwise",  # transfer, receive
}  # fmt: skip


def _mapped() -> set[str]:
    text = (STATIC / "ui.js").read_text(encoding="utf-8")
    keys: set[str] = set()
    for table in ("ERRORS", "REASONS"):
        body = re.search(rf"const {table} = \{{(.*?)\n\}};", text, re.S)
        assert body, table
        keys |= set(re.findall(r"^\s*([a-z_]+):", body.group(1), re.M))
    return keys


def _sent() -> set[str]:
    codes: set[str] = {"invalid_request", "too_many_requests", "not_found", "csrf"}
    for path in [*(ROOT / "scanner_service").rglob("*.py"), *(ROOT / "workers").rglob("*.py")]:
        text = path.read_text(encoding="utf-8")
        codes |= set(re.findall(r'reason_code="([a-z_]+)"', text))
        codes |= set(re.findall(r'^    code = "([a-z_]+)"', text, re.M))
    return codes


def test_every_error_the_api_sends_a_person_has_chinese_words() -> None:
    missing = sorted(_sent() - _mapped() - NOT_FOR_THE_PAGE)
    assert not missing, f"codes the page would show as 操作未完成 or 工作站内部出错: {missing}"


def test_no_chinese_words_for_a_code_the_api_never_sends() -> None:
    assert not sorted(_mapped() - _sent() - {"network", "unauthorized", "forbidden"})
