"""An export's fixity: ``manifest-sha256.txt`` (every file but itself, in ``sha256sum`` form) and
``data/manifest.js`` (the same list for verify.html), and their check (``scanstation verify-export``).

The manifest is written last, from the digests taken as each file was written. ``data/manifest.js``
lists every file but itself and the text manifest; the text manifest lists data/manifest.js too.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from scanner_service.archive.export.site import MANIFEST, MANIFEST_SCRIPT, Volume
from scanner_service.exceptions import NotFound
from workers.durable import sha256_of

VOLUME_PREFIX = "disc-"  # an export split into volumes: DIR/disc-1/, DIR/disc-2/, …


def write_manifest(volume: Volume) -> None:
    """Write both manifests of the volume from the digests of what was written into it."""
    listed = sorted(rel for rel in volume.files if rel not in (MANIFEST, MANIFEST_SCRIPT))
    rows = [[rel, volume.files[rel].sha256, volume.files[rel].size] for rel in listed]
    payload = json.dumps({"algorithm": "SHA-256", "files": rows}, ensure_ascii=False, separators=(",", ":"))
    volume.write_text(MANIFEST_SCRIPT, f"SS.manifest({payload});\n")
    lines = [f"{volume.files[rel].sha256}  {rel}\n" for rel in sorted([*listed, MANIFEST_SCRIPT])]
    volume.write_text(MANIFEST, "".join(lines))


@dataclass
class VerifyReport:
    """What ``verify-export`` found in one volume."""

    folder: Path
    checked: int = 0
    bytes_read: int = 0
    changed: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    extra: list[str] = field(default_factory=list)  # files the manifest does not list

    @property
    def ok(self) -> bool:
        return not (self.changed or self.missing)

    def lines(self) -> list[str]:
        out = [f"CHANGED  {rel}" for rel in self.changed]
        out += [f"MISSING  {rel}" for rel in self.missing]
        out += [f"EXTRA    {rel}  (not in the manifest)" for rel in self.extra]
        return out


def volumes_of(folder: Path) -> list[Path]:
    """The volume folders of an export: the folder itself, or its disc-N folders."""
    if (folder / MANIFEST).is_file():
        return [folder]
    found = sorted(
        (p for p in folder.glob(f"{VOLUME_PREFIX}*") if (p / MANIFEST).is_file()),
        key=lambda p: int(p.name[len(VOLUME_PREFIX) :]) if p.name[len(VOLUME_PREFIX) :].isdigit() else 0,
    )
    if not found:
        raise NotFound(f"{folder}: no {MANIFEST} here or in {VOLUME_PREFIX}N folders: is this an export?")
    return found


def verify_volume(folder: Path) -> VerifyReport:
    """Re-read every file the volume's manifest lists and compare its SHA-256."""
    report = VerifyReport(folder)
    listed: set[str] = set()
    for number, line in enumerate((folder / MANIFEST).read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        digest, sep, rel = line.partition("  ")
        if not sep or len(digest) != 64:
            report.changed.append(f"{MANIFEST} (line {number} is not 'sha256  path')")
            continue
        listed.add(rel)
        path = folder / rel
        if not path.is_file():
            report.missing.append(rel)
            continue
        now = sha256_of(path)
        report.checked += 1
        report.bytes_read += now.size
        if now.sha256 != digest:
            report.changed.append(rel)
    for path in sorted(folder.rglob("*")):
        rel = path.relative_to(folder).as_posix()
        if path.is_file() and rel not in listed and rel != MANIFEST:
            report.extra.append(rel)
    return report


def verify_export(folder: Path) -> list[VerifyReport]:
    """Check every volume of the export at ``folder``."""
    return [verify_volume(volume) for volume in volumes_of(folder)]
