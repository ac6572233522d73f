"""The registry client retries 5xx and 429 like the Kubernetes gateway, over real HTTP."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from mmerep.errors import RegistryError
from mmerep.registry import RegistryClient, RegistryRetry
from testkit.scripted_http import Script, scripted_server

DIGEST = "sha256:" + "ab" * 32


@pytest.fixture()
def registry() -> Iterator[tuple[str, Script]]:
    with scripted_server() as (url, script):
        yield url.removeprefix("http://"), script


def oci_error(code: str, message: str) -> dict:
    return {"errors": [{"code": code, "message": message}]}


def client(address: str, slept: list[float], attempts: int = 4) -> RegistryClient:
    return RegistryClient(address, credentials=None, retry=RegistryRetry(
        attempts=attempts, initial=0.1, maximum=1.0, sleep=slept.append))


def test_500_then_success_is_retried_with_backoff(registry) -> None:
    address, script = registry
    script.answers = [(500, oci_error("UNKNOWN", "storage hiccup"), {}),
                      (503, None, {}),
                      (200, None, {"Docker-Content-Digest": DIGEST})]
    slept: list[float] = []
    assert client(address, slept).resolve("mme-rep/x/sentinel3", "v1") == DIGEST
    assert slept == [0.1, 0.2]
    assert script.seen == ["HEAD /v2/mme-rep/x/sentinel3/manifests/v1"] * 3


def test_429_honours_retry_after(registry) -> None:
    address, script = registry
    script.answers = [(429, oci_error("TOOMANYREQUESTS", "slow down"), {"Retry-After": "3"}),
                      (200, {"tags": ["v1"]}, {})]
    slept: list[float] = []
    assert client(address, slept).tags("mme-rep/x/sentinel3") == ["v1"]
    assert slept == [3.0]


def test_final_message_says_what_the_registry_said(registry) -> None:
    address, script = registry
    script.answers = [(500, oci_error("UNKNOWN", "database is locked"), {})]
    slept: list[float] = []
    with pytest.raises(RegistryError) as info:
        client(address, slept, attempts=3).resolve("mme-rep/x/sentinel3", "v1")
    message = info.value.message
    # The HEAD answer has no body, so the client asked once with GET for the message.
    assert "HTTP 500" in message and "database is locked" in message
    assert "after 3 attempts" in message and "resolving mme-rep/x/sentinel3:v1" in message
    assert info.value.hint and "try again later" in info.value.hint
    assert len(slept) == 2 and script.seen[-1].startswith("GET ")


def test_429_without_end_names_the_limit(registry) -> None:
    address, script = registry
    script.answers = [(429, oci_error("TOOMANYREQUESTS", "pull rate limit reached"),
                       {"Retry-After": "1"})]
    slept: list[float] = []
    with pytest.raises(RegistryError) as info:
        client(address, slept, attempts=2).tags("mme-rep/x/sentinel3")
    assert "HTTP 429" in info.value.message and "pull rate limit reached" in info.value.message
    assert slept == [1.0]


def test_4xx_is_not_retried(registry) -> None:
    address, script = registry
    script.answers = [(400, oci_error("NAME_INVALID", "invalid repository name"), {})]
    slept: list[float] = []
    with pytest.raises(RegistryError) as info:
        client(address, slept).tags("BAD")
    assert "invalid repository name" in info.value.message
    assert slept == [] and len(script.seen) == 1


def test_refused_connection_is_retried_then_a_clear_error() -> None:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    slept: list[float] = []
    with pytest.raises(RegistryError) as info:
        client(f"127.0.0.1:{port}", slept, attempts=3).tags("a/b")
    assert "unreachable" in info.value.message and "after 3 attempts" in info.value.message
    assert slept == [0.1, 0.2]
