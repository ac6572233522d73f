"""Running the console on uvicorn: in the foreground (the command) or in a thread (tests,
benchmarks)."""

from __future__ import annotations

import socket
import threading
from collections.abc import Callable
from typing import Any

import uvicorn

from mmerep.console.app import Console, create_app
from mmerep.errors import UsageError


def bind(host: str, port: int) -> socket.socket:
    """The listening socket, so a busy port is one clear line and port 0 picks a free one."""
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise UsageError(f"cannot listen on {host}:{port}: {exc.strerror}",
                         hint="pick another with --port P (0: any free port)") from None
    sock.listen(128)
    sock.set_inheritable(True)
    return sock


class _Server(uvicorn.Server):
    """Tells the live streams to end before uvicorn waits for open connections."""

    def __init__(self, config: uvicorn.Config, console: Console) -> None:
        super().__init__(config)
        self.console = console

    def handle_exit(self, sig: int, frame: Any) -> None:
        self.console.closing.set()
        super().handle_exit(sig, frame)


def _server(console: Console, sock: socket.socket) -> _Server:
    console.port = sock.getsockname()[1]
    config = uvicorn.Config(create_app(console), log_level="warning", access_log=False,
                            timeout_graceful_shutdown=5, lifespan="on")
    return _Server(config, console)


def serve(console: Console, host: str = "127.0.0.1", port: int = 0,
          on_ready: Callable[[str], None] | None = None) -> None:
    """Serve until interrupted; ``on_ready`` gets the address with the token."""
    sock = bind(host, port)
    server = _server(console, sock)
    if on_ready:
        on_ready(console.url(host))
    server.run(sockets=[sock])


class Running:
    """A console served from a thread; ``stop()`` ends it."""

    def __init__(self, console: Console, server: uvicorn.Server,
                 thread: threading.Thread) -> None:
        self.console = console
        self.server = server
        self.thread = thread

    @property
    def url(self) -> str:
        return self.console.url()

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.console.port}"

    def stop(self) -> None:
        self.console.closing.set()
        self.server.should_exit = True
        self.thread.join(30)


def start_in_thread(console: Console, host: str = "127.0.0.1", port: int = 0) -> Running:
    sock = bind(host, port)
    server = _server(console, sock)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]},
                              name="console", daemon=True)
    thread.start()
    ready = threading.Event()

    def started() -> None:
        while not server.started and thread.is_alive():
            ready.wait(0.05)

    started()
    if not server.started:
        raise UsageError("the console did not start", hint="run with --debug for the reason")
    return Running(console, server, thread)
