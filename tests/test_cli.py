"""The `scanstation` command as an operator runs it: a real process, its stdout and stderr."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from scanner_service.api.app import create_app
from scanner_service.settings import build_settings

EXE = Path(sys.executable).with_name("scanstation")
# A log line below WARNING, from any logger (the format is "time LEVEL name: message").
QUIET_LEVELS = re.compile(r"^\S+ \S+ (DEBUG|INFO) (\S+):", re.MULTILINE)


def scanstation(*args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SCANSTATION_")}
    return subprocess.run([str(EXE), *args], capture_output=True, text=True, env=env, timeout=120)


def test_token_create_prints_the_token_alone_and_it_opens_the_api(tmp_path: Path, redis_url: str) -> None:
    data = tmp_path / "data"
    # The first command on a new data folder creates the catalogue: the migrations run here.
    done = scanstation("token", "create", "--data", str(data), "--role", "admin")
    assert done.returncode == 0, done.stderr
    assert len(done.stdout.splitlines()) == 1, f"stdout must be the token alone: {done.stdout!r}"
    token = done.stdout.strip()
    assert re.fullmatch(r"sst_[A-Za-z0-9_-]{20,}", token), token
    assert "shown once" in done.stderr
    assert not QUIET_LEVELS.findall(done.stderr), done.stderr
    assert (data / "catalogue.sqlite3").is_file(), "the catalogue was created"

    settings = build_settings(data=data).model_copy(update={"redis_url": redis_url})
    client = TestClient(create_app(settings))
    assert client.get("/api/batches", headers={"Authorization": f"Bearer {token}"}).status_code == 200
    assert client.get("/api/batches", headers={"Authorization": f"Bearer {token}x"}).status_code == 401


@pytest.mark.parametrize("command", [["token", "create", "--role", "reader"], ["token", "list"], ["audit"]])
def test_commands_print_no_library_chatter(tmp_path: Path, command: list[str]) -> None:
    """Neither a migration (alembic) nor opening PDFs (pikepdf) puts INFO lines on stderr."""
    done = scanstation(*command, "--data", str(tmp_path / "data"))
    assert done.returncode == 0, done.stderr
    assert not QUIET_LEVELS.findall(done.stderr), done.stderr


def test_verbose_shows_the_migrations(tmp_path: Path) -> None:
    """The library lines are held back by level, not lost: -v shows alembic's migration steps."""
    done = scanstation("audit", "-v", "--data", str(tmp_path / "data"))
    assert done.returncode == 0, done.stderr
    assert ("INFO", "alembic.runtime.migration") in QUIET_LEVELS.findall(done.stderr), done.stderr
