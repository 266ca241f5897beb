"""Shared fixtures: a real redis-server per session, a fresh catalogue (SQLite or PostgreSQL) per test."""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from sqlalchemy import create_engine, text

from scanner_service.archive.db import migrate
from scanner_service.archive.layout import Layout
from scanner_service.settings import Settings, build_settings
from workers.exec import redis_server

pytest_plugins = ("tests.web",)  # the browser tests' fixtures: web_station, browser, web

SHARED = Path(__file__).resolve().parents[2] / "shared"
CORPUS = SHARED / "corpus"
SAMPLE = CORPUS / "sample" / "pages"
REAL = CORPUS / "real"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="session")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real redis-server of the tests' own, on a free loopback port in a temporary folder."""
    folder = tmp_path_factory.mktemp("redis")
    port = _free_port()
    proc = redis_server.start(folder, folder / "r.sock", port=port)
    yield f"redis://127.0.0.1:{port}/0"
    redis_server.stop(proc)


@pytest.fixture
def redis_conn(redis_url: str) -> Iterator[redis.Redis]:
    conn = redis.Redis.from_url(redis_url)
    conn.flushall()
    yield conn
    conn.close()


def postgres_admin_url() -> str | None:
    return os.environ.get("SCANSTATION_TEST_POSTGRES_URL")


@pytest.fixture
def postgres_url() -> Iterator[str]:
    """A new, empty PostgreSQL database for one test, dropped afterwards."""
    admin = postgres_admin_url()
    if not admin:
        if os.environ.get("SCANSTATION_REQUIRE_POSTGRES"):
            pytest.fail("SCANSTATION_TEST_POSTGRES_URL is not set but PostgreSQL tests are required")
        pytest.skip("set SCANSTATION_TEST_POSTGRES_URL to run the PostgreSQL catalogue tests")
    admin_sa = admin.replace("postgresql://", "postgresql+psycopg://", 1)
    name = f"scanstation_test_{uuid.uuid4().hex[:10]}"
    engine = create_engine(admin_sa, isolation_level="AUTOCOMMIT")
    with engine.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    url = admin_sa.rsplit("/", 1)[0] + f"/{name}"
    yield url
    from scanner_service.archive.db import get_engine

    get_engine(url).dispose()
    with engine.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    engine.dispose()


@pytest.fixture(params=["sqlite", "postgresql"])
def catalogue_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """Each catalogue test runs on SQLite and on PostgreSQL."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'catalogue.sqlite3'}"
    return str(request.getfixturevalue("postgres_url"))


@pytest.fixture
def station_env(tmp_path: Path, redis_url: str, redis_conn: redis.Redis, monkeypatch: pytest.MonkeyPatch) -> Settings:
    """Settings for a station in tmp_path, also put in the environment so in-process jobs see them."""
    data, inbox = tmp_path / "data", tmp_path / "inbox"
    inbox.mkdir()
    env = {
        "SCANSTATION_DATA": str(data),
        "SCANSTATION_INBOX": str(inbox),
        "SCANSTATION_REDIS_URL": redis_url,
        "SCANSTATION_QUIET_SECONDS": "1.5",
        "SCANSTATION_POLL_SECONDS": "0.2",
        "SCANSTATION_RETRY_BACKOFF": "0",
        "OMP_THREAD_LIMIT": "1",
    }
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    settings = build_settings()
    migrate(settings.effective_database_url)
    return settings


def copy_sample(target: Path, names: list[str] | None = None) -> list[Path]:
    """Copy sample scanner pages into a batch folder."""
    target.mkdir(parents=True, exist_ok=True)
    files = sorted(SAMPLE.iterdir()) if names is None else [SAMPLE / n for n in names]
    out = []
    for f in files:
        dest = target / f.name
        shutil.copy(f, dest)
        out.append(dest)
    return out


# ---- a real small file system for the archive: full or read-only disks -----------------------------

PLENTY = 256 << 20  # bytes: a tmpfs the filings never fill


def mount(*args: str) -> None:
    subprocess.run(["mount", *args], check=True, capture_output=True)


@contextlib.contextmanager
def archive_on_tmpfs(settings: Settings, free: int | None = None) -> Iterator[Path]:
    """The station's archive folder on a tmpfs holding what the archive held, with ``free`` bytes
    left (or plenty)."""
    archive = Layout.of(settings).archive
    archive.mkdir(parents=True, exist_ok=True)
    saved = archive.with_name("archive-saved")
    archive.rename(saved)
    archive.mkdir()
    try:
        mount("-t", "tmpfs", "-o", f"size={PLENTY}", "tmpfs", str(archive))
    except (subprocess.CalledProcessError, FileNotFoundError) as err:
        archive.rmdir()
        saved.rename(archive)
        pytest.skip(f"cannot mount a tmpfs here ({err}); the filing hook tests inject ENOSPC and EROFS instead")
    try:
        shutil.copytree(saved, archive, dirs_exist_ok=True)
        if free is not None:
            mount("-o", f"remount,size={used_bytes(archive) + free}", str(archive))
        yield archive
    finally:
        subprocess.run(["umount", "-l", str(archive)], check=False, capture_output=True)


def used_bytes(archive: Path) -> int:
    st = os.statvfs(archive)
    return (st.f_blocks - st.f_bfree) * st.f_frsize
