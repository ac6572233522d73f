"""The byte pump: local file descriptors <-> a stream (a port-forward, or a TCP socket).

One thread, one ``select``: a side is read only when the other side's buffer has room
(back-pressure; nothing piles up in memory), and the loop sleeps in ``select`` when
nothing can move (no busy loop). A stream offers ``fileno``, ``pending``, ``wants_write``,
``send``, ``flush``, ``receive`` and ``close``, as ``mmerep.portforward.PortForward`` does.
"""

from __future__ import annotations

import contextlib
import errno
import os
import select
import socket
from collections.abc import Iterator
from typing import Any, Protocol

CHUNK = 256 * 1024
HIGH_WATER = 1024 * 1024
PIPE_SIZE = 1024 * 1024
LINGER = 2.0


class Stream(Protocol):
    def fileno(self) -> int: ...
    def pending(self) -> bool: ...
    @property
    def wants_write(self) -> bool: ...
    def send(self, data: bytes) -> None: ...
    def flush(self) -> None: ...
    def receive(self, limit: int = ...) -> bytes | None: ...
    def close(self) -> None: ...


class SocketStream:
    """A plain connected socket as a ``Stream`` (the kubectl fallback's forwarded port)."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self._out = bytearray()
        sock.setblocking(False)

    def fileno(self) -> int:
        return self.sock.fileno()

    def pending(self) -> bool:
        return False

    @property
    def wants_write(self) -> bool:
        return bool(self._out)

    def send(self, data: bytes) -> None:
        self._out += data

    def flush(self) -> None:
        while self._out:
            try:
                sent = self.sock.send(self._out[:HIGH_WATER])
            except BlockingIOError:
                return
            del self._out[:sent]

    def receive(self, limit: int = HIGH_WATER) -> bytes | None:
        try:
            data = self.sock.recv(min(limit, CHUNK))
        except BlockingIOError:
            return b""
        except OSError:
            return None
        return data or None

    def close_write(self) -> None:
        with contextlib.suppress(OSError):
            self.sock.shutdown(socket.SHUT_WR)

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.sock.setblocking(True)
            self.sock.settimeout(1)
            self.sock.sendall(self._out)
        self.sock.close()


@contextlib.contextmanager
def _nonblocking(*fds: int) -> Iterator[None]:
    """O_NONBLOCK on pipes and sockets (never on a terminal: that is the shell's too)."""
    import fcntl

    saved = []
    for fd in fds:
        if os.isatty(fd):
            continue
        with contextlib.suppress(OSError, AttributeError):
            # A bigger pipe lets ssh hand over more per wake-up (Linux; a no-op otherwise).
            fcntl.fcntl(fd, getattr(fcntl, "F_SETPIPE_SZ", 1031), PIPE_SIZE)
        flags = fcntl.fcntl(fd, fcntl.F_GETFL)
        saved.append((fd, flags))
        fcntl.fcntl(fd, fcntl.F_SETFL, flags | os.O_NONBLOCK)
    try:
        yield
    finally:
        for fd, flags in saved:
            with contextlib.suppress(OSError):
                fcntl.fcntl(fd, fcntl.F_SETFL, flags)


def _read_some(fd: int) -> tuple[bytes, bool]:
    """Up to CHUNK bytes that are there now (several reads: one frame, not many small
    ones), and whether the fd is still open."""
    parts: list[bytes] = []
    size = 0
    while size < CHUNK:
        try:
            data = os.read(fd, CHUNK - size)
        except BlockingIOError:
            break
        if not data:
            return b"".join(parts), False
        parts.append(data)
        size += len(data)
        if os.isatty(fd):
            break
    return b"".join(parts), True


def _write_some(fd: int, data: bytes | bytearray) -> int | None:
    """How much of ``data`` went out now (0 if none could); None when the reader is gone."""
    try:
        return os.write(fd, data)
    except BlockingIOError:
        return 0
    except OSError as exc:
        if exc.errno in (errno.EPIPE, errno.EBADF):
            return None
        raise


def pump(stream: Stream | Any, in_fd: int = 0, out_fd: int = 1) -> tuple[int, int]:
    """Copy ``in_fd`` -> stream and stream -> ``out_fd`` until either side ends.

    Returns (bytes sent, bytes received). The stream is closed on return.
    """
    to_local = bytearray()
    ready_r: list[Any]
    ready_w: list[Any]
    sent = received = 0
    in_open, remote_open, half_closed = True, True, False
    try:
        with _nonblocking(in_fd, out_fd):
            while remote_open or to_local:
                if not in_open and not stream.wants_write and not half_closed:
                    half_closed = True  # tell the remote side, where the stream can
                    getattr(stream, "close_write", lambda: None)()
                readers: list[Any] = []
                writers: list[Any] = []
                if in_open and not stream.wants_write:
                    readers.append(in_fd)
                take_now = remote_open and len(to_local) < HIGH_WATER and stream.pending()
                if remote_open and len(to_local) < HIGH_WATER:
                    readers.append(stream)
                if stream.wants_write:
                    writers.append(stream)
                if to_local:
                    writers.append(out_fd)
                if take_now:  # decrypted data already waits: take it without sleeping
                    ready_r, ready_w = [stream], []
                elif readers or writers:
                    # Once the local side has ended, the remote side gets LINGER seconds
                    # of quiet to finish (a WebSocket port-forward cannot half-close).
                    ready_r, ready_w, _ = select.select(readers, writers, [],
                                                        None if in_open else LINGER)
                    if not (ready_r or ready_w):
                        break
                else:
                    break
                for side in ready_r:
                    if side is stream:
                        data = stream.receive(HIGH_WATER - len(to_local))
                        if data is None:
                            remote_open = False
                        elif data:
                            received += len(data)
                            if to_local:
                                to_local += data
                            else:  # straight out, without another select (ssh's handshake
                                # is a dozen small round trips)
                                n = _write_some(out_fd, data)
                                if n is None:
                                    return sent, received
                                to_local += data[n:]
                    else:
                        chunk, in_open = _read_some(in_fd)
                        if chunk:
                            sent += len(chunk)
                            stream.send(chunk)
                            stream.flush()
                for side in ready_w:
                    if side is stream:
                        stream.flush()
                    elif to_local:
                        n = _write_some(out_fd, to_local)
                        if n is None:
                            return sent, received
                        del to_local[:n]
    finally:
        stream.close()
    return sent, received
