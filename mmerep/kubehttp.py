"""The HTTP side of the gateway: a resolved connection, its on-disk cache, and a transport.

The official client resolves a kubeconfig (client certificates, tokens, exec plugins,
auth providers) well, but importing it costs ~0.4 s, more than a whole ``kubectl get``.
So ``mmerep.kube`` resolves a kubeconfig with it once, keeps what it resolved here
(``Connection``, cached under the user's cache directory, readable only by the user,
invalidated when the kubeconfig changes or a token expires), and every request goes out
through ``Transport``, which needs only the standard library. This module never imports
the Kubernetes client.
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import ssl
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple
from urllib.parse import urlencode, urlsplit

if TYPE_CHECKING:  # imported when a request goes out: `ssh proxy` sends none through here
    import http.client

# A cached token is not used in its last minute: a request must not start with a token
# that expires on the way.
EXPIRY_MARGIN = 60.0
CACHE_VERSION = 1
CACHE_ENTRIES = 32


class Connection(NamedTuple):
    """Everything needed to talk to one API server as one identity. (A NamedTuple:
    `mme-rep ssh proxy` loads it from the cache, and `dataclasses` costs more to import.)"""

    host: str  # https://host:port (or http:// for test servers)
    ca_file: str | None = None
    cert_file: str | None = None
    key_file: str | None = None
    token: str | None = None  # the Authorization header value ("Bearer ...", "Basic ...")
    token_file: str | None = None  # re-read at each connection (rotated service-account tokens)
    verify: bool = True
    tls_server_name: str | None = None
    expires: float | None = None  # epoch seconds when the token stops being valid
    namespace: str = "default"
    context: str | None = None

    def authorization(self) -> str | None:
        if self.token_file:
            with contextlib.suppress(OSError):
                return "Bearer " + Path(self.token_file).read_text().strip()
        return self.token


# How a kept-alive connection the server has closed fails when it is used again.
STALE = (ConnectionResetError, BrokenPipeError, ConnectionAbortedError, ssl.SSLEOFError)


class Transport:
    """Keep-alive HTTP(S) connections, one per thread, to one API server."""

    def __init__(self, connection: Connection) -> None:
        self.connection = connection
        parts = urlsplit(connection.host)
        self.https = parts.scheme == "https"
        self.netloc = parts.hostname or "127.0.0.1"
        self.port = parts.port or (443 if self.https else 80)
        self.prefix = parts.path.rstrip("/")
        self._local = threading.local()
        self._ssl: ssl.SSLContext | None = None
        self._ssl_lock = threading.Lock()

    def ssl_context(self) -> ssl.SSLContext:
        with self._ssl_lock:
            if self._ssl is None:
                c = self.connection
                ctx = ssl.create_default_context(cafile=c.ca_file if c.verify else None)
                if not c.verify:
                    ctx.check_hostname = False
                    ctx.verify_mode = ssl.CERT_NONE
                if c.cert_file:
                    ctx.load_cert_chain(c.cert_file, c.key_file)
                self._ssl = ctx
            return self._ssl

    def _open(self, timeout: float) -> http.client.HTTPConnection:
        import http.client

        if self.https:
            server_hostname = self.connection.tls_server_name
            conn: http.client.HTTPConnection = _https_connection_class()(
                self.netloc, self.port, timeout=timeout, context=self.ssl_context(),
                server_hostname=server_hostname)
        else:
            conn = http.client.HTTPConnection(self.netloc, self.port, timeout=timeout)
        return conn

    def send(self, method: str, path: str, *, query: list[tuple[str, Any]] | None = None,
             body: Any = None, headers: dict[str, str] | None = None, timeout: float = 30.0,
             stream: bool = False) -> Response:
        """One request; raises OSError or http.client.HTTPException when the wire fails."""
        import http.client

        url = self.prefix + path + (f"?{urlencode(query)}" if query else "")
        all_headers = {"Accept": "application/json", "User-Agent": "mme-rep",
                       **(headers or {})}
        auth = self.connection.authorization()
        if auth:
            all_headers["Authorization"] = auth
        data = None
        if body is not None:
            data = body if isinstance(body, bytes) else json.dumps(body).encode()
            all_headers.setdefault("Content-Type", "application/json")
        # A watch holds its connection until the stream ends: it gets one of its own.
        conn = self._open(timeout) if stream else self._pooled(timeout)
        reused = not stream and conn.sock is not None
        try:
            conn.request(method, url, body=data, headers=all_headers)
            resp = conn.getresponse()
        except (OSError, http.client.HTTPException) as exc:
            conn.close()
            if not stream:
                self._local.conn = None
            if reused and isinstance(exc, STALE):
                # The server closed a kept-alive connection while it sat idle (kube-apiserver
                # does after about 90 s), before our request: send it again on a new
                # connection at once, not after the caller's back-off pause.
                return self.send(method, path, query=query, body=body, headers=headers,
                                 timeout=timeout)
            raise
        if stream:
            return Response(resp, conn)
        payload = resp.read()
        if resp.will_close:
            conn.close()
            self._local.conn = None
        return Response(resp, None, payload)

    def _pooled(self, timeout: float) -> http.client.HTTPConnection:
        conn: http.client.HTTPConnection | None = getattr(self._local, "conn", None)
        if conn is None:
            conn = self._open(timeout)
            self._local.conn = conn
        conn.timeout = timeout
        if conn.sock is not None:
            conn.sock.settimeout(timeout)
        return conn


@functools.cache
def _https_connection_class() -> Any:  # a class: HTTPSConnection with a server name
    import http.client

    class _HTTPSConnection(http.client.HTTPSConnection):
        """HTTPS whose certificate check may use another name (kubeconfig tls-server-name)."""

        def __init__(self, host: str, port: int, *, timeout: float,
                     context: ssl.SSLContext, server_hostname: str | None) -> None:
            super().__init__(host, port, timeout=timeout, context=context)
            self._server_hostname = server_hostname

        def connect(self) -> None:
            http.client.HTTPConnection.connect(self)
            self.sock = self._context.wrap_socket(  # type: ignore[attr-defined]
                self.sock, server_hostname=self._server_hostname or self.host)

    return _HTTPSConnection


class Response:
    """Status, headers and body of one answer; a stream yields its body line by line."""

    def __init__(self, resp: http.client.HTTPResponse, conn: http.client.HTTPConnection | None,
                 payload: bytes | None = None) -> None:
        self.status = resp.status
        self.headers = resp.headers
        self._resp = resp
        self._conn = conn
        self._payload = payload

    def read(self) -> bytes:
        if self._payload is None:
            self._payload = self._resp.read()
        return self._payload

    def __iter__(self) -> Any:
        while True:
            line = self._resp.readline()
            if not line:
                return
            if line.strip():
                yield line

    def release_conn(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None


# -- the cache of resolved kubeconfigs ------------------------------------------------------

def kubeconfig_files(path: str | os.PathLike[str] | None) -> list[Path]:
    """The files a kubeconfig is read from, as the official client reads them."""
    if path:
        return [Path(path)]
    env = os.environ.get("KUBECONFIG")
    if env:
        return [Path(p) for p in env.split(os.pathsep) if p]
    return [Path.home() / ".kube" / "config"]


def cache_key(files: list[Path], context: str | None) -> str | None:
    """Changes whenever any file of the kubeconfig changes (or none when one is missing)."""
    import hashlib  # not needed in a pod (no kubeconfig)

    h = hashlib.sha256(f"v{CACHE_VERSION}\0{context or ''}".encode())
    for f in files:
        try:
            st = f.stat()
        except OSError:
            return None
        h.update(f"\0{f.resolve()}\0{st.st_mtime_ns}\0{st.st_size}\0{st.st_ino}".encode())
    return h.hexdigest()[:32]


def cache_dir() -> Path:
    from mmerep.paths import cache_dir as base

    return base() / "kube"


def load_cached(key: str) -> Connection | None:
    """The connection saved under ``key``, if it is still usable."""
    try:
        data = json.loads((cache_dir() / f"{key}.json").read_text())
    except (OSError, ValueError):
        return None
    if data.pop("version", None) != CACHE_VERSION:
        return None
    try:
        conn = Connection(**data)
    except TypeError:
        return None
    if conn.expires is not None and conn.expires - EXPIRY_MARGIN <= time.time():
        return None
    for f in (conn.ca_file, conn.cert_file, conn.key_file, conn.token_file):
        if f and not Path(f).is_file():
            return None
    return conn


def save_cached(key: str, conn: Connection, files: dict[str, bytes]) -> Connection:
    """Keep ``conn`` (and copies of its certificate and key files) for later processes.

    Only the user can read the cache: it holds what the kubeconfig holds.
    """
    directory = cache_dir()
    directory.mkdir(parents=True, exist_ok=True)
    os.chmod(directory, 0o700)
    kept = {}
    for field_name, content in files.items():
        target = directory / f"{key}.{field_name}.pem"
        _write_private(target, content)
        kept[field_name] = str(target)
    conn = Connection(**{**conn._asdict(), **kept})
    _write_private(directory / f"{key}.json",
                   json.dumps({"version": CACHE_VERSION, **conn._asdict()}).encode())
    _prune(directory)
    return conn


def _prune(directory: Path) -> None:
    """Keep the most recently resolved ``CACHE_ENTRIES`` kubeconfigs (each change of a
    kubeconfig makes a new entry; old ones would pile up)."""
    entries = sorted(directory.glob("*.json"), key=lambda p: p.stat().st_mtime, reverse=True)
    for stale in entries[CACHE_ENTRIES:]:
        forget_cached(stale.stem)


def forget_cached(key: str) -> None:
    for f in cache_dir().glob(f"{key}.*"):
        with contextlib.suppress(OSError):
            f.unlink()


def _write_private(path: Path, content: bytes) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.write(fd, content)
    finally:
        os.close(fd)
    os.replace(tmp, path)
