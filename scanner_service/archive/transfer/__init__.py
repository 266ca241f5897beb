"""移交 and 接收: a fonds handed over to the county archive as a BagIt bag, and filed there as it was.

``scanstation transfer --fonds C015 [--years 1998-2013] --to DIR`` writes the bag
(:mod:`.package`); ``scanstation receive BAG`` on the receiving station validates it and files every
item under its own 档号, with the same description, pages, page order, masters and PDF (:mod:`.receive`).
The bag's layout is in :mod:`.format`; the 归档文件目录 and each item's XML are written by :mod:`.catalogue`.
"""

from scanner_service.archive.transfer.format import BagInvalid, TransferError
from scanner_service.archive.transfer.package import TransferReport, TransferSpec, transfer_fonds
from scanner_service.archive.transfer.receive import ReceiveReport, receive_bag, validate_bag

__all__ = [
    "BagInvalid",
    "ReceiveReport",
    "TransferError",
    "TransferReport",
    "TransferSpec",
    "receive_bag",
    "transfer_fonds",
    "validate_bag",
]
