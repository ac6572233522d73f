"""Kube.map: the reads of one command run at once, answers in order, first error raised."""

from __future__ import annotations

import threading

import pytest

from mmerep.errors import KubeNotFound
from mmerep.kube import Kube
from mmerep.kubehttp import Connection


def _kube() -> Kube:
    return Kube(Connection(host="http://127.0.0.1:9"))  # no request is sent


def test_runs_at_once_and_answers_in_order() -> None:
    together = threading.Barrier(3, timeout=10)  # breaks unless three run at the same time

    def read(n: int) -> int:
        together.wait()
        return n * n

    assert _kube().map(read, [1, 2, 3], workers=3) == [1, 4, 9]


def test_the_first_error_in_order_is_raised_after_all_ran() -> None:
    ran: list[int] = []

    def read(n: int) -> int:
        ran.append(n)
        if n in (2, 4):
            raise KubeNotFound(f"thing {n} not found")
        return n

    with pytest.raises(KubeNotFound, match="thing 2"):
        _kube().map(read, [1, 2, 3, 4, 5], workers=2)
    assert sorted(ran) == [1, 2, 3, 4, 5]
