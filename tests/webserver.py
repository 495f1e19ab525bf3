"""A running ``eingrad serve`` for the web tests (tests/test_web.py, tests/test_web_browser.py)."""

from __future__ import annotations

import json
import os
import pathlib
import subprocess
import sys
import tempfile
import urllib.error
import urllib.parse
import urllib.request

SRC = pathlib.Path(__file__).resolve().parents[1] / "src"


def env() -> dict[str, str]:
    """The environment with this checkout's sources first on the path."""
    out = dict(os.environ)
    out["PYTHONPATH"] = str(SRC) + (os.pathsep + out["PYTHONPATH"] if out.get("PYTHONPATH") else "")
    return out


class Server:
    """``eingrad serve --port 0`` in a subprocess; its URL is the first line it prints."""

    def __init__(self, *args: str) -> None:
        self.stderr = tempfile.TemporaryFile(mode="w+")  # a file, not a pipe: it never fills up
        self.process = subprocess.Popen(
            [sys.executable, "-m", "eingrad", "serve", "--port", "0", "--no-browser", *args],
            stdout=subprocess.PIPE, stderr=self.stderr, text=True, env=env(),
        )
        line = self.process.stdout.readline()
        if "http://" not in line:
            self.process.kill()
            self.process.wait()
            self.stderr.seek(0)
            raise AssertionError(f"the server did not start: {line!r} {self.stderr.read()!r}")
        self.url = line.split()[2]
        parts = urllib.parse.urlsplit(self.url)
        self.host, self.port = parts.hostname, parts.port
        # The URL is printed once the port is bound; requests are answered once the workers have started.
        status, _, _ = self.get("/api/examples")
        assert status == 200

    def close(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self.process.stdout.close()
        self.stderr.close()

    def get(self, path: str) -> tuple[int, dict[str, str], bytes]:
        try:
            with urllib.request.urlopen(self.url.rstrip("/") + path, timeout=60) as response:
                return response.status, dict(response.headers), response.read()
        except urllib.error.HTTPError as err:
            return err.code, dict(err.headers), err.read()

    def post(self, path: str, body, timeout: float = 120) -> tuple[int, dict]:
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
        request = urllib.request.Request(self.url.rstrip("/") + path, data=data,
                                         headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(request, timeout=timeout) as response:
                return response.status, json.loads(response.read())
        except urllib.error.HTTPError as err:
            return err.code, json.loads(err.read())

    def derive(self, **body) -> tuple[int, dict]:
        return self.post("/api/derive", body)
