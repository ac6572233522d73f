"""The cached CNCF distribution registry (the binary the cluster uses) on a free port."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from pathlib import Path
from typing import Any

import yaml


class ToolMissing(RuntimeError):
    """A tool (or a built binary) a test tier needs is not installed."""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Registry:
    """A registry on 127.0.0.1 storing in ``workdir``; ``extra`` merges into its config
    (e.g. ``auth={"htpasswd": ...}``). Use as a context manager."""

    def __init__(self, workdir: Path, **extra: Any) -> None:
        from mmerep.cluster.build import binary_path

        self.binary = binary_path("registry")
        if not self.binary.is_file():
            raise ToolMissing(f"the registry binary {self.binary} is not built; run: "
                              "./mme-rep.sh cluster build")
        self.workdir = workdir
        self.extra = extra
        self.port = free_port()
        self.address = f"127.0.0.1:{self.port}"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> Registry:
        self.workdir.mkdir(parents=True, exist_ok=True)
        config = self.workdir / "registry.yml"
        config.write_text(yaml.safe_dump({
            "version": 0.1,
            "log": {"level": "warn", "accesslog": {"disabled": True}},
            "storage": {"filesystem": {"rootdirectory": str(self.workdir / "data")},
                        "delete": {"enabled": True}},
            "http": {"addr": self.address},
            **self.extra,
        }))
        with (self.workdir / "registry.log").open("ab") as log:
            self.proc = subprocess.Popen([str(self.binary), "serve", str(config)], stdout=log,
                                         stderr=log, start_new_session=True)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"the registry exited (code {self.proc.returncode}); "
                                   f"see {self.workdir / 'registry.log'}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                    return self
            except OSError:
                time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"the registry did not listen on {self.address} within 20s")

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        os.killpg(self.proc.pid, signal.SIGTERM)
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=10)

    def __enter__(self) -> Registry:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
