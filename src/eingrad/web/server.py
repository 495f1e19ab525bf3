"""Run the playground with uvicorn on a socket bound here (so ``--port 0`` picks a free port)."""

from __future__ import annotations

import ipaddress
import os
import socket
import sys
import threading
import webbrowser

import uvicorn

from eingrad.errors import EingradError

from .app import create_app

__all__ = ["bind", "serve"]


def bind(host: str, port: int) -> socket.socket:
    """A listening socket on ``host:port``; an :class:`EingradError` with a hint when it cannot be had."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as err:
        raise EingradError(f"cannot listen on {host!r}: {err.strerror}",
                           hint="give an address such as 127.0.0.1 (this machine only) or 0.0.0.0") from None
    family, kind, proto, _, address = infos[0]
    sock = socket.socket(family, kind, proto)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind(address)
        sock.listen(128)
    except OSError as err:
        sock.close()
        raise EingradError(f"cannot listen on {host}:{port}: {err.strerror}",
                           hint="another program may use the port: pick another with --port (0 for any free one)"
                           ) from None
    sock.set_inheritable(True)
    return sock


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _has_display() -> bool:
    """A graphical browser can be opened (on Linux without a display, webbrowser would start a
    text browser in this terminal)."""
    if os.environ.get("BROWSER"):
        return True
    return sys.platform in ("darwin", "win32") or bool(os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))


def _open(url: str) -> None:
    try:
        webbrowser.open(url)
    except Exception as err:  # webbrowser.Error, OSError: the page can still be opened by hand
        print(f"could not open a browser ({err}): open {url} in yours", file=sys.stderr, flush=True)


def serve(host: str = "127.0.0.1", port: int = 8000, open_browser: bool = True, workers: int = 2,
          time_limit: float = 10.0) -> int:
    """Serve the playground until interrupted; returns the exit code."""
    sock = bind(host, port)
    bound_port = sock.getsockname()[1]
    shown = f"[{host}]" if ":" in host else host
    url = f"http://{'127.0.0.1' if host in ('0.0.0.0', '') else shown}:{bound_port}/"
    print(f"eingrad playground: {url}  (Ctrl-C to stop)", flush=True)
    if not _is_loopback(host):
        print(f"warning: listening on {host}: other machines on the network can use the playground",
              file=sys.stderr, flush=True)
    app = create_app(workers=workers, time_limit=time_limit)
    config = uvicorn.Config(app, log_level="warning", access_log=False, lifespan="on")
    server = uvicorn.Server(config)
    if open_browser and _has_display():
        threading.Timer(1.0, _open, args=(url,)).start()
    elif open_browser:
        print("no display to open a browser on: open the address above in yours", file=sys.stderr, flush=True)
    server.run(sockets=[sock])
    return 0
