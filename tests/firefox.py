"""Debian's firefox-esr driven over WebDriver BiDi (Firefox's own remote protocol: Playwright drives only
its patched Firefox builds, which we never download). Enough for the export's tests: open a file:// page
with no network, run a script in it, wait for the page to show something, and collect console errors and
every request that left the machine.

The network is cut in the profile: every protocol goes through a proxy on a port nothing listens on.
"""

from __future__ import annotations

import contextlib
import json
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

import websockets.sync.client as ws

FIREFOX = shutil.which("firefox-esr") or "/usr/bin/firefox-esr"
NO_NETWORK_PREFS = {
    "network.proxy.type": 1,
    "network.proxy.http": "127.0.0.1",
    "network.proxy.http_port": 9,
    "network.proxy.ssl": "127.0.0.1",
    "network.proxy.ssl_port": 9,
    "network.proxy.socks": "127.0.0.1",
    "network.proxy.socks_port": 9,
    "network.proxy.allow_hijacking_localhost": True,
    "network.proxy.no_proxies_on": "",
    "network.dns.disabled": True,
    "browser.shell.checkDefaultBrowser": False,
    "datareporting.policy.dataSubmissionEnabled": False,
    "toolkit.telemetry.enabled": False,
    "app.update.disabledForTesting": True,
    "browser.safebrowsing.malware.enabled": False,
    "browser.safebrowsing.phishing.enabled": False,
    "extensions.update.enabled": False,
    "browser.startup.homepage_override.mstone": "ignore",
}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Firefox:
    """One headless firefox-esr with a fresh profile, and one tab."""

    def __init__(self, width: int = 1366, height: int = 768) -> None:
        self.profile = Path(tempfile.mkdtemp(prefix="ff-profile-"))
        prefs = "".join(f"user_pref({json.dumps(k)}, {json.dumps(v)});\n" for k, v in NO_NETWORK_PREFS.items())
        (self.profile / "user.js").write_text(prefs)
        port = _free_port()
        self.proc = subprocess.Popen(
            [FIREFOX, "--headless", "--no-remote", "--profile", str(self.profile), "--remote-debugging-port",
             str(port), f"--width={width}", f"--height={height}"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )  # fmt: skip
        self.console_errors: list[str] = []
        self.requests: list[str] = []
        self._id = 0
        self._stack = contextlib.ExitStack()
        deadline = time.monotonic() + 60
        while True:
            try:
                self.conn = self._stack.enter_context(
                    ws.connect(f"ws://127.0.0.1:{port}/session", max_size=None, open_timeout=5)
                )
                break
            except OSError:
                if time.monotonic() > deadline or self.proc.poll() is not None:
                    self.close()
                    raise
                time.sleep(0.25)
        self.command("session.new", {"capabilities": {}})
        self.command("session.subscribe", {"events": ["log.entryAdded", "network.beforeRequestSent"]})
        tree = self.command("browsingContext.getTree", {})
        self.context = tree["contexts"][0]["context"]

    def command(self, method: str, params: dict[str, Any]) -> dict[str, Any]:
        self._id += 1
        self.conn.send(json.dumps({"id": self._id, "method": method, "params": params}))
        while True:
            message = json.loads(self.conn.recv(timeout=60))
            if message.get("type") == "event":
                self._event(message)
            elif message.get("id") == self._id:
                if message.get("type") == "error":
                    raise RuntimeError(f"{method}: {message.get('error')}: {message.get('message')}")
                return dict(message["result"])

    def _event(self, message: dict[str, Any]) -> None:
        params = message.get("params", {})
        if message["method"] == "log.entryAdded" and params.get("level") == "error":
            self.console_errors.append(str(params.get("text")))
        elif message["method"] == "network.beforeRequestSent":
            self.requests.append(str(params.get("request", {}).get("url")))

    def goto(self, url: str) -> None:
        self.command("browsingContext.navigate", {"context": self.context, "url": url, "wait": "complete"})

    def evaluate(self, expression: str) -> Any:
        """The value of a JavaScript expression in the page (a promise is awaited); JSON-able values only."""
        result = self.command(
            "script.evaluate",
            {
                "expression": f"Promise.resolve(({expression})).then(v => JSON.stringify(v))",
                "target": {"context": self.context},
                "awaitPromise": True,
            },
        )
        if result.get("type") == "exception":
            raise RuntimeError(f"{expression}: {result['exceptionDetails'].get('text')}")
        value = result["result"].get("value")
        return None if value is None else json.loads(value)

    def wait_for(self, expression: str, timeout: float = 20) -> Any:
        """Evaluate until the expression is truthy; its value."""
        deadline = time.monotonic() + timeout
        while True:
            value = self.evaluate(expression)
            if value:
                return value
            if time.monotonic() > deadline:
                raise AssertionError(f"firefox: {expression} did not come true within {timeout} s")
            time.sleep(0.1)

    def close(self) -> None:
        try:
            self._stack.close()
        finally:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
            shutil.rmtree(self.profile, ignore_errors=True)
