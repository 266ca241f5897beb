"""The transfer bag's layout, shared by the station that writes it and the one that receives it.

::

    bagit.txt, bag-info.txt            BagIt 0.97 (bagit-python): who sent it, of which fonds, how many items
    manifest-sha256.txt                every payload file with its SHA-256
    tagmanifest-sha256.txt             the tag files' SHA-256
    data/transfer.json                 what the bag holds: the fonds, the items, what was left out and why
    data/归档文件目录.csv, .xlsx         the item catalogue, DA/T 22-2015 columns
    data/archive/<全宗>/<门类>/<年度>/<档号>/   each item's folder as the station filed it, plus:
        item.xml                       its description (DA/T 18-2022 names), pages and files' SHA-256
        transfer-record.json           its catalogue row, pages (keys, text, decisions), files, history
"""

from __future__ import annotations

from scanner_service.exceptions import ScanstationError

FORMAT = "scanstation-transfer/1"
ITEM_FORMAT = "scanstation-transfer-item/1"
TRANSFER_JSON = "transfer.json"
PAYLOAD_ARCHIVE = "archive"
ITEM_XML = "item.xml"
ITEM_RECORD = "transfer-record.json"

# The description fields a receiving station takes as they are (the 档号's parts it reads from the 档号).
DESCRIPTION_FIELDS = (
    "serial", "title", "author", "date_text", "doc_number", "expected_pages", "classification", "open_status", "note",
)  # fmt: skip
# The item's catalogue row in transfer-record.json, by the names of the catalogue's columns.
ITEM_FIELDS = (
    "code_key", "archival_code", "folder", "fonds", "category", "year", "retention", "org", "volume", "item_no",
    *DESCRIPTION_FIELDS, "date", "pages_filed", "version", "pdf_name", "pdf_sha256", "pdf_size", "filed_at",
)  # fmt: skip


class TransferError(ScanstationError):
    """The station's own archive could not be transferred as recorded (a file changed or missing)."""

    code = "transfer_failed"
    http_status = 409
    exit_code = 18


class BagInvalid(ScanstationError):
    """A bag to receive is not whole: a file changed, missing or unexpected, or it is not a bag at all.
    ``problems`` names each file; nothing of it was filed."""

    code = "bag_invalid"
    http_status = 422
    exit_code = 17

    def __init__(self, message: str, problems: list[str] | None = None) -> None:
        super().__init__(message)
        self.problems = problems or []
