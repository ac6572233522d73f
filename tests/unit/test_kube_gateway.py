"""The gateway's retry and error mapping, over real HTTP to a small local server."""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Iterator

import pytest

from mmerep.errors import (
    KubeAdmissionDenied,
    KubeConflict,
    KubeForbidden,
    KubeNotFound,
    KubeUnauthenticated,
    KubeUnreachable,
)
from mmerep.kube import Kube, RetryPolicy, error_for_status, sort_for_apply, sort_for_delete
from testkit.scripted_http import QuietHandler, Script, scripted_server, serving


@pytest.fixture()
def server() -> Iterator[tuple[str, Script]]:
    with scripted_server() as served:
        yield served


def no_sleep_policy(slept: list[float], attempts: int = 4) -> RetryPolicy:
    return RetryPolicy(attempts=attempts, initial=0.1, maximum=1.0, sleep=slept.append)


def status(code: int, reason: str, message: str) -> dict:
    return {"kind": "Status", "apiVersion": "v1", "status": "Failure", "code": code,
            "reason": reason, "message": message}


def test_5xx_is_retried_with_backoff_then_succeeds(server) -> None:
    url, script = server
    script.answers = [(503, status(503, "ServiceUnavailable", "etcd busy"), {}),
                      (500, status(500, "InternalError", "oops"), {}),
                      (200, {"kind": "Namespace", "metadata": {"name": "a"}}, {})]
    slept: list[float] = []
    kube = Kube.from_url(url, retry=no_sleep_policy(slept))
    got = kube.get("v1", "Namespace", "a")
    assert got is not None and got["metadata"]["name"] == "a"
    assert slept == [0.1, 0.2]
    assert len(script.seen) == 3


def test_429_honours_retry_after(server) -> None:
    url, script = server
    script.answers = [(429, status(429, "TooManyRequests", "slow down"), {"Retry-After": "3"}),
                      (200, {"kind": "Namespace", "metadata": {"name": "a"}}, {})]
    slept: list[float] = []
    Kube.from_url(url, retry=no_sleep_policy(slept)).get("v1", "Namespace", "a")
    assert slept == [3.0]


def test_retries_stop_with_the_servers_message(server) -> None:
    url, script = server
    script.answers = [(503, status(503, "ServiceUnavailable", "etcd is gone"), {})]
    slept: list[float] = []
    with pytest.raises(Exception) as info:
        Kube.from_url(url, retry=no_sleep_policy(slept, attempts=3)).get("v1", "Namespace", "a")
    assert "etcd is gone" in str(info.value)
    assert len(script.seen) == 3 and len(slept) == 2


def test_4xx_is_not_retried_and_maps_to_our_errors(server) -> None:
    url, script = server
    script.answers = [(403, status(403, "Forbidden",
                                   'pods is forbidden: User "x" cannot list resource'), {})]
    slept: list[float] = []
    kube = Kube.from_url(url, retry=no_sleep_policy(slept))
    with pytest.raises(KubeForbidden) as info:
        kube.list_objects("v1", "Pod", "ns")
    assert type(info.value) is KubeForbidden
    assert 'User "x" cannot list' in info.value.message
    assert info.value.hint and "RBAC" in info.value.hint
    assert slept == [] and len(script.seen) == 1


def test_get_of_a_missing_object_is_none(server) -> None:
    url, script = server
    script.answers = [(404, status(404, "NotFound", 'namespaces "zz" not found'), {})]
    assert Kube.from_url(url).get("v1", "Namespace", "zz") is None


def test_refused_connection_is_retried_then_a_clear_error() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed once the block ends: nothing listens there
    slept: list[float] = []
    kube = Kube.from_url(f"http://127.0.0.1:{port}", retry=no_sleep_policy(slept, attempts=3))
    with pytest.raises(KubeUnreachable) as info:
        kube.get("v1", "Namespace", "a")
    assert f"127.0.0.1:{port}" in info.value.message and "after 3 attempts" in info.value.message
    assert slept == [0.1, 0.2]
    assert info.value.hint and "cluster status" in info.value.hint


def test_error_mapping_keeps_the_server_message() -> None:
    body = json.dumps(status(409, "Conflict", "Apply failed with 1 conflict: conflict with "
                             '"kubectl" using apps/v1: .spec.replicas'))
    err = error_for_status(409, body, "apply Deployment/x")
    assert isinstance(err, KubeConflict)
    assert 'conflict with "kubectl"' in err.message
    assert err.hint and err.hint.endswith("take them over with mme-rep env deploy --force")
    assert isinstance(error_for_status(404, "{}", "get"), KubeNotFound)


def test_objects_are_applied_in_dependency_order_and_deleted_in_reverse() -> None:
    objs = [{"kind": k, "metadata": {"name": k.lower()}} for k in
            ("Deployment", "Service", "RoleBinding", "ConfigMap", "Namespace", "Role",
             "ServiceAccount", "DaemonSet", "Widget")]
    order = [o["kind"] for o in sort_for_apply(objs)]
    assert order == ["Namespace", "ServiceAccount", "ConfigMap", "Role", "RoleBinding",
                     "Service", "DaemonSet", "Deployment", "Widget"]
    assert [o["kind"] for o in sort_for_delete(objs)] == list(reversed(order))


def test_401_says_not_authenticated_and_how_to_log_in() -> None:
    body = json.dumps(status(401, "Unauthorized", "Unauthorized"))
    err = error_for_status(401, body, "list pods")
    assert type(err) is KubeUnauthenticated
    assert err.message == "not authenticated: list pods: Unauthorized"
    assert err.hint and err.hint.startswith("log in again")


def test_a_403_from_admission_says_what_admission_said_not_rbac() -> None:
    said = ('pods "x" is forbidden: error looking up service account ns/default: '
            'serviceaccount "default" not found')
    err = error_for_status(403, json.dumps(status(403, "Forbidden", said)), "check Pod/x in ns")
    assert type(err) is KubeAdmissionDenied
    assert err.message == f"admission refused Pod/x in ns: {said}"
    assert err.hint and "RBAC" not in err.hint


def test_a_kept_alive_connection_the_server_dropped_while_idle_is_replaced_at_once() -> None:
    class Handler(QuietHandler):
        protocol_version = "HTTP/1.1"  # keeps connections open between requests...
        timeout = 0.2  # ...and closes one idle this long (kube-apiserver: about 90 s)
        connections: list[int] = []

        def setup(self) -> None:
            super().setup()
            self.connections.append(1)

        def do_GET(self) -> None:
            self.send_json(200, {"major": "1"})

    slept: list[float] = []
    with serving(Handler) as url:
        kube = Kube.from_url(url, retry=no_sleep_policy(slept))
        assert kube.request("GET", "/version") == {"major": "1"}
        assert kube.request("GET", "/version") == {"major": "1"}
        assert len(Handler.connections) == 1  # the connection was kept
        time.sleep(0.5)
        started = time.monotonic()
        assert kube.request("GET", "/version") == {"major": "1"}
    assert slept == [] and time.monotonic() - started < 0.1  # no back-off pause
    assert len(Handler.connections) == 2
