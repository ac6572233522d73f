"""Running a command on a pseudo-terminal, as a user's interactive shell does."""

from __future__ import annotations

import fcntl
import os
import struct
import subprocess
import termios


def run_on_terminal(cmd: list[str], columns: int = 100,
                    timeout: float | None = None) -> tuple[int, bytes]:
    """Run ``cmd`` with stdin, stdout and stderr on a new pseudo-terminal ``columns``
    wide, reading what it draws until it exits; returns its exit code and those bytes."""
    master, slave = os.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 30, columns, 0, 0))
    env = {**os.environ, "TERM": "xterm-256color", "COLUMNS": str(columns)}
    for var in ("NO_COLOR", "TTY_COMPATIBLE", "TTY_INTERACTIVE"):
        env.pop(var, None)
    try:
        proc = subprocess.Popen(cmd, stdin=slave, stdout=slave, stderr=slave, env=env,
                                start_new_session=True)
    finally:
        os.close(slave)
    out = bytearray()
    try:
        while True:
            try:
                data = os.read(master, 1 << 16)
            except OSError:  # EIO: every descriptor of the terminal's other side is closed
                break
            if not data:
                break
            out += data
    finally:
        os.close(master)
    return proc.wait(timeout=timeout), bytes(out)
