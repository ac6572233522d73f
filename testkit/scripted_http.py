"""A local HTTP server for tests of our HTTP clients: real sockets, answers from a script."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

Answer = tuple[int, "dict | None", dict[str, str]]


class Script:
    """Answers to send, in order, as (status, JSON body or None, headers); the last one
    repeats. ``seen`` records each request as ``"METHOD /path"``."""

    def __init__(self) -> None:
        self.answers: list[Answer] = []
        self.seen: list[str] = []


@contextmanager
def serving(handler: type[BaseHTTPRequestHandler]) -> Iterator[str]:
    """Serve ``handler`` on a free port of 127.0.0.1; yields ``http://127.0.0.1:PORT``."""
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.02},
                              daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}"
    finally:
        httpd.shutdown()
        httpd.server_close()


class QuietHandler(BaseHTTPRequestHandler):
    """A request handler that does not write an access log to stderr."""

    def log_message(self, *args: object) -> None:
        pass

    def send_json(self, status: int, body: object, headers: dict[str, str] | None = None,
                  content_type: str = "application/json") -> None:
        data = (body.encode() if isinstance(body, str)
                else json.dumps(body).encode() if body is not None else b"")
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)


@contextmanager
def scripted_server() -> Iterator[tuple[str, Script]]:
    """A server answering every method from a fresh :class:`Script`."""
    script = Script()

    class Handler(QuietHandler):
        def _answer(self) -> None:
            script.seen.append(f"{self.command} {self.path}")
            status, body, headers = script.answers[min(len(script.seen), len(script.answers)) - 1]
            self.send_json(status, body, headers)

        do_GET = do_HEAD = do_PUT = do_POST = do_PATCH = do_DELETE = _answer

    with serving(Handler) as url:
        yield url, script
