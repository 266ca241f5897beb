"""The station's own redis-server: append-only persistence under the data folder, on a Unix socket."""

from __future__ import annotations

import contextlib
import re
import shutil
import subprocess
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

import redis

from workers.errors import MissingProgram, ScanstationError

MIN_VERSION = (6, 0)


def version() -> tuple[int, int, int]:
    """redis-server's version, or MissingProgram with what to install."""
    exe = shutil.which("redis-server")
    if exe is None:
        raise MissingProgram("redis-server is not installed: run 'make run' or 'apt-get install redis-server'.")
    out = subprocess.run([exe, "--version"], capture_output=True, text=True, check=False).stdout
    match = re.search(r"v=(\d+)\.(\d+)\.(\d+)", out)
    if not match:
        raise MissingProgram(f"Cannot read redis-server's version from {out!r}.")
    found = tuple(int(x) for x in match.groups())
    if found[:2] < MIN_VERSION:
        raise MissingProgram(f"redis-server {found} is too old; {MIN_VERSION} or newer is needed.")
    return found  # type: ignore[return-value]


def start(
    directory: Path,
    socket: Path,
    *,
    port: int = 0,
    launcher: Sequence[str] = (),
    env: Mapping[str, str] | None = None,
) -> subprocess.Popen[bytes]:
    """Start redis-server as a child with AOF persistence (fsync every write: a queued page is never lost).

    Listens on ``socket`` (and on 127.0.0.1:``port`` if a port is given). Returns once it answers PING.
    ``launcher`` comes before the command (the station's lifeline); ``env`` is its environment.
    """
    version()
    directory.mkdir(parents=True, exist_ok=True)
    socket.unlink(missing_ok=True)
    args = [
        "redis-server",
        "--dir", str(directory),
        "--unixsocket", str(socket),
        "--unixsocketperm", "700",
        "--port", str(port),
        "--bind", "127.0.0.1",
        "--appendonly", "yes",
        "--appendfsync", "always",
        "--save", "",
        "--daemonize", "no",
        "--logfile", str(directory / "redis.log"),
    ]  # fmt: skip
    # Its own session: a Ctrl-C or a signal to the station's process group must not stop Redis before
    # the workers have finished (the supervisor stops it last).
    proc = subprocess.Popen(
        [*launcher, *args], stdin=subprocess.DEVNULL, start_new_session=True, env=None if env is None else dict(env)
    )
    client = redis.Redis(unix_socket_path=str(socket))
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise ScanstationError(f"redis-server exited at start; see {directory / 'redis.log'}.")
        try:
            if client.ping():
                # AOF is loaded before PING answers; LOADING errors are caught below.
                return proc
        except (redis.ConnectionError, redis.BusyLoadingError, FileNotFoundError):
            time.sleep(0.05)
    proc.kill()
    proc.wait()
    raise ScanstationError(f"redis-server did not answer within 30 s; see {directory / 'redis.log'}.")


def serving(socket: Path) -> tuple[int, Path] | None:
    """(pid, data folder) of a redis-server that answers on ``socket``, or None if none answers."""
    if not socket.exists():
        return None
    client = redis.Redis(unix_socket_path=str(socket), socket_timeout=2, socket_connect_timeout=2)
    try:
        pid = int(client.info("server")["process_id"])
        folder = Path(str(client.config_get("dir")["dir"]))
    except (redis.RedisError, OSError, KeyError, ValueError):
        return None
    finally:
        with contextlib.suppress(redis.RedisError):
            client.close()
    return pid, folder


def stop(proc: subprocess.Popen[bytes], timeout: float = 10) -> None:
    """Stop redis-server cleanly (SIGTERM makes it flush the AOF)."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
