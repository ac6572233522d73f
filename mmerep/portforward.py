"""The API server's WebSocket port-forward (``v4.channel.k8s.io``) on a raw TLS socket.

Used by `mme-rep ssh proxy` (once per SSH connection) and `mme-rep env open`. It does not
import the Kubernetes client: the connection comes resolved from the gateway
(``endpoint_of``), and the pod lookup goes through ``Kube.request``.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any, NamedTuple
from urllib.parse import quote, urlsplit

from mmerep.errors import KubeError, KubeUnreachable

if TYPE_CHECKING:
    from mmerep.kube import Kube
    from mmerep.kubehttp import Connection, Transport

# Not the client's own port-forward: it would import the client, and adds a thread, a
# socket pair and an unbounded buffer to every connection.

PORT_FORWARD_PROTOCOL = "v4.channel.k8s.io"


class Endpoint(NamedTuple):
    """Where to open a raw connection to the API server: address, TLS and auth header."""

    server: str  # https://host:port[/prefix]
    headers: tuple[tuple[str, str], ...] = ()
    ssl_context: Any = None  # ssl.SSLContext for https
    server_hostname: str | None = None

    @property
    def host_port(self) -> tuple[str, int]:
        parts = urlsplit(self.server)
        return (parts.hostname or "localhost",
                parts.port or (443 if parts.scheme == "https" else 80))

    @property
    def prefix(self) -> str:
        return urlsplit(self.server).path.rstrip("/")

    def connect(self, timeout: float = 15.0) -> Any:
        """A connected socket (TLS when https), or KubeUnreachable."""
        import socket

        host, port = self.host_port
        try:
            sock = socket.create_connection(  # getaddrinfo takes bytes too
                (_ascii(host), port), timeout=timeout)  # type: ignore[arg-type]
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            if self.ssl_context is not None:
                sock = self.ssl_context.wrap_socket(
                    sock, server_hostname=_ascii(self.server_hostname or host))
        except OSError as exc:
            raise KubeUnreachable(f"cannot reach the API server at {self.server}: {exc}",
                                  hint="is the cluster up, and the kubeconfig context "
                                  "right?") from None
        return sock


def _ascii(name: str) -> str | bytes:
    """An ASCII host name as bytes: socket and ssl then skip importing the idna codec."""
    return name.encode() if name.isascii() else name


def endpoint_of(kube: Kube) -> Endpoint:
    """The raw-socket ``Endpoint`` of a gateway connection (same TLS, same credentials)."""
    return endpoint_for(kube.connection, kube.transport)


def endpoint_for(conn: Connection, transport: Transport | None = None) -> Endpoint:
    """The ``Endpoint`` of a resolved connection (e.g. the gateway's cached one)."""
    auth = conn.authorization()
    https = conn.host.startswith("https")
    if https and transport is None:
        from mmerep.kubehttp import Transport

        transport = Transport(conn)
    return Endpoint(conn.host.rstrip("/"), (("Authorization", auth),) if auth else (),
                    transport.ssl_context() if https and transport else None,
                    conn.tls_server_name)


class RawApi:
    """GET requests on one raw keep-alive connection, which a ``PortForward`` then takes
    over (``take_socket``): the pod lookup and the port-forward share one TLS handshake,
    and no HTTP library is imported. Only what ``mme-rep ssh proxy`` asks: JSON GETs."""

    def __init__(self, endpoint: Endpoint, timeout: float = 15.0) -> None:
        self.endpoint = endpoint
        self.sock = endpoint.connect(timeout)
        self.timeout = timeout
        self._buf = bytearray()
        self._reusable = True

    def request(self, method: str, path: str, *, query: dict[str, Any] | None = None,
                what: str | None = None) -> Any:
        """Parsed JSON of a 2xx answer; the gateway's error for any other (KubeError),
        OSError when the connection fails."""
        import json
        from urllib.parse import urlencode

        assert method == "GET", method
        url = self.endpoint.prefix + path + (f"?{urlencode(query)}" if query else "")
        if not self._reusable:  # the last answer closed the connection
            self.sock.close()
            self.sock, self._reusable = self.endpoint.connect(self.timeout), True
            self._buf.clear()
        self.sock.sendall(_request_head(self.endpoint, f"GET {url} HTTP/1.1",
                                        ["Accept: application/json"]))
        status, fields = self._head()
        self._reusable = (fields.get("connection", "").lower() != "close"
                          and fields[":version"] != "HTTP/1.0")
        body = self._body(fields)
        if not 200 <= status < 300:
            from mmerep.kube import error_for_status

            raise error_for_status(status, body, what or f"GET {path}")
        return json.loads(body)

    def take_socket(self) -> Any:
        """The connection, for a next request of one's own (a new one if the server
        closes this one)."""
        sock, self.sock = self.sock, None
        if not self._reusable or self._buf:  # closing, or answering what we did not ask
            sock.close()
            return self.endpoint.connect(self.timeout)
        return sock

    def close(self) -> None:
        if self.sock is not None:
            self.sock.close()
            self.sock = None

    def _fill(self) -> None:
        chunk = self.sock.recv(65536)
        if not chunk:
            raise ConnectionResetError("the API server closed the connection")
        self._buf += chunk

    def _head(self) -> tuple[int, dict[str, str]]:
        while (end := self._buf.find(b"\r\n\r\n")) < 0:
            self._fill()
        status, fields = _parse_head(bytes(self._buf[:end]))
        del self._buf[:end + 4]
        return status, fields

    def _take(self, n: int) -> bytes:
        while len(self._buf) < n:
            self._fill()
        data = bytes(self._buf[:n])
        del self._buf[:n]
        return data

    def _line(self) -> bytes:
        while (end := self._buf.find(b"\r\n")) < 0:
            self._fill()
        return self._take(end + 2)[:-2]

    def _body(self, fields: dict[str, str]) -> bytes:
        if "transfer-encoding" not in fields and "content-length" not in fields:
            while not self._reusable:  # the body ends with the connection
                try:
                    self._fill()
                except ConnectionResetError:
                    break
            return self._take(len(self._buf))
        if "chunked" in fields.get("transfer-encoding", "").lower():
            parts = []
            while size := int(self._line().split(b";")[0], 16):
                parts.append(self._take(size))
                self._take(2)
            while self._line():  # trailers, up to the empty line
                pass
            return b"".join(parts)
        return self._take(int(fields.get("content-length", "0") or 0))


def _request_head(endpoint: Endpoint, first: str, extra: list[str]) -> bytes:
    host, port = endpoint.host_port
    lines = [first, f"Host: {host}:{port}", "User-Agent: mme-rep", *extra]
    lines += [f"{k}: {v}" for k, v in endpoint.headers]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def _parse_head(header: bytes) -> tuple[int, dict[str, str]]:
    lines = header.decode("latin-1").split("\r\n")
    words = lines[0].split()
    status = int(words[1]) if len(words) > 1 and words[1].isdigit() else 0
    fields = {k.strip().lower(): v.strip() for k, _, v in
              (line.partition(":") for line in lines[1:])}
    fields[":version"] = words[0] if words else ""
    return status, fields


_XOR: dict[int, bytes] = {}  # byte value -> the table that XORs every byte with it


def masked(payload: bytes, mask: bytes) -> bytes | bytearray:
    """``payload`` XOR ``mask`` repeated: RFC 6455's client masking.

    Small frames: one big-int XOR. Bulk (scp, rsync): each of the four byte lanes through
    ``bytes.translate`` with its byte's XOR table, about twice as fast in pure Python.
    """
    n = len(payload)
    if n < 16384:
        key = int.from_bytes((mask * (n // 4 + 1))[:n], "little")
        return (int.from_bytes(payload, "little") ^ key).to_bytes(n, "little")
    out = bytearray(n)
    for lane in range(4):
        table = _XOR.get(mask[lane])
        if table is None:
            table = _XOR[mask[lane]] = bytes(b ^ mask[lane] for b in range(256))
        out[lane::4] = payload[lane::4].translate(table)
    return out


class PortForward:
    """One pod port through the API server (WebSocket, ``v4.channel.k8s.io``), non-blocking.

    Channel 0 carries the data, channel 1 the server's errors; the first message on each
    repeats the port. ``send`` frames and queues; ``flush`` writes what the socket takes;
    ``receive`` returns the data that arrived (b"" when none), None when the stream ended.
    """

    def __init__(self, sock: Any, port: int, buffered: bytes = b"") -> None:
        self.sock = sock
        self.port = port
        self._in = bytearray(buffered)
        self._out = bytearray()
        self._started = [False, False]
        self._channel = 0  # of the message being continued by continuation frames
        self._closed = False
        sock.setblocking(False)

    @classmethod
    def open(cls, endpoint: Endpoint, namespace: str, pod: str, port: int,
             timeout: float = 15.0, api: RawApi | None = None) -> PortForward:
        """The port-forward, on ``api``'s connection when given (else a new one)."""
        import base64
        import hashlib

        path = (f"{endpoint.prefix}/api/v1/namespaces/{quote(namespace)}/pods/{quote(pod)}"
                f"/portforward?ports={port}")
        key = base64.b64encode(os.urandom(16)).decode()
        request = _request_head(endpoint, f"GET {path} HTTP/1.1", [
            "Upgrade: websocket", "Connection: Upgrade", f"Sec-WebSocket-Key: {key}",
            "Sec-WebSocket-Version: 13", f"Sec-WebSocket-Protocol: {PORT_FORWARD_PROTOCOL}"])
        sock = api.take_socket() if api is not None else endpoint.connect(timeout)
        head = bytearray()
        try:
            sock.sendall(request)
            while b"\r\n\r\n" not in head:
                chunk = sock.recv(65536)
                if not chunk:
                    break
                head += chunk
        except OSError as exc:
            sock.close()
            raise KubeUnreachable(f"port-forward to {pod}: the API server closed the "
                                  f"connection: {exc}") from None
        header, _, rest = bytes(head).partition(b"\r\n\r\n")
        status, fields = _parse_head(header)
        what = f"port-forward to pod {pod} in {namespace}"
        if status != 101:
            length = int(fields.get("content-length", "0") or 0)
            while len(rest) < length:
                try:
                    more = sock.recv(65536)
                except OSError:
                    break
                if not more:
                    break
                rest += more
            sock.close()
            from mmerep.kube import error_for_status  # the gateway's mapping; failures only

            raise error_for_status(status, rest, what)
        accept = base64.b64encode(hashlib.sha1(  # noqa: S324 (the WebSocket handshake)
            (key + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11").encode()).digest()).decode()
        if fields.get("sec-websocket-accept") != accept:
            sock.close()
            raise KubeError(f"{what}: the server's WebSocket handshake is wrong")
        return cls(sock, port, rest)

    def fileno(self) -> int:
        return int(self.sock.fileno())

    def pending(self) -> bool:
        """Decrypted bytes wait inside the TLS layer (select cannot see them)."""
        return bool(getattr(self.sock, "pending", lambda: 0)())

    @property
    def wants_write(self) -> bool:
        return bool(self._out)

    def send(self, data: bytes, opcode: int = 2) -> None:
        payload = (b"\x00" + data) if opcode == 2 else data
        n = len(payload)
        if n < 126:
            head = bytes((0x80 | opcode, 0x80 | n))
        elif n < 65536:
            head = bytes((0x80 | opcode, 0x80 | 126)) + n.to_bytes(2, "big")
        else:
            head = bytes((0x80 | opcode, 0x80 | 127)) + n.to_bytes(8, "big")
        mask = os.urandom(4)
        self._out += head
        self._out += mask
        self._out += masked(payload, mask)

    def flush(self) -> None:
        import ssl

        while self._out:
            try:
                with memoryview(self._out) as view:  # no copy of what is queued
                    sent = self.sock.send(view[:1 << 20])
            except (BlockingIOError, ssl.SSLWantWriteError, ssl.SSLWantReadError):
                return
            except OSError:  # the server went away: receive() says the stream ended
                self._out.clear()
                self._closed = True
                return
            del self._out[:sent]

    def receive(self, limit: int = 1 << 20) -> bytes | None:
        """Data that arrived on the data channel; None once the stream has ended."""
        import ssl

        while len(self._in) < limit:
            try:
                chunk = self.sock.recv(1 << 18)
            except (BlockingIOError, ssl.SSLWantReadError, ssl.SSLWantWriteError):
                break
            except OSError:
                chunk = b""
            if not chunk:
                self._closed = True
                break
            self._in += chunk
            if not self.pending():
                break
        data = self._frames()
        if data is None or (self._closed and not data):
            return None
        return data

    def _frames(self) -> bytes | None:
        out = bytearray()
        buf, pos, end = self._in, 0, len(self._in)
        try:
            while end - pos >= 2:
                opcode, n, at = buf[pos] & 0x0F, buf[pos + 1] & 0x7F, pos + 2
                if n == 126:
                    if end - pos < 4:
                        break
                    n, at = int.from_bytes(buf[pos + 2:pos + 4], "big"), pos + 4
                elif n == 127:
                    if end - pos < 10:
                        break
                    n, at = int.from_bytes(buf[pos + 2:pos + 10], "big"), pos + 10
                if end - at < n:
                    break
                pos = at + n
                if opcode == 8:  # close
                    self._closed = True
                    return bytes(out) or None
                if opcode == 9:  # ping
                    self.send(bytes(buf[at:at + n]), opcode=10)
                    continue
                if opcode not in (0, 2) or n == 0:
                    continue
                if opcode == 2:
                    self._channel, at = buf[at], at + 1
                channel = self._channel
                if channel > 1:
                    continue
                if not self._started[channel]:  # the first message repeats the port
                    self._started[channel] = True
                    at += 2
                if channel == 1:
                    if pos > at:
                        message = bytes(buf[at:pos]).decode("utf-8", "replace").strip()
                        raise KubeError(f"port-forward to port {self.port}: {message}")
                    continue
                out += buf[at:pos]
        finally:
            del buf[:pos]  # once: deleting per frame would move the rest each time
        return bytes(out)

    def close(self) -> None:
        try:
            self.sock.setblocking(True)
            self.sock.settimeout(1)
            self.sock.sendall(self._out)
            self._out.clear()
            self.send(b"\x03\xe8", opcode=8)  # normal closure
            self.sock.sendall(self._out)
        except OSError:
            pass
        finally:
            self.sock.close()
