"""Registry logins as users have them: auth files and environment, Basic and Bearer."""

from __future__ import annotations

import base64
import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import bcrypt
import pytest

from mmerep.cluster.sample import push_sample_image
from mmerep.errors import RegistryError
from mmerep.registry import RegistryClient
from testkit.registry import Registry

pytestmark = pytest.mark.cluster  # the Go-built registry (mme-rep cluster build)

PASSWORD = "s3cret-Pa55"


@pytest.fixture(scope="module")
def locked(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real registry that wants a login (htpasswd, as a small site would run it)."""
    root = tmp_path_factory.mktemp("locked-registry")
    hashed = bcrypt.hashpw(PASSWORD.encode(), bcrypt.gensalt(rounds=4)).decode()
    (root / "htpasswd").write_text(f"alice:{hashed}\n")
    with Registry(root, auth={"htpasswd": {"realm": "mme-rep-test",
                                           "path": str(root / "htpasswd")}}) as registry:
        yield registry.address


@pytest.fixture(autouse=True)
def no_logins(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for var in ("MMEREP_REGISTRY_USER", "MMEREP_REGISTRY_PASSWORD", "REGISTRY_AUTH_FILE",
                "XDG_RUNTIME_DIR"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("DOCKER_CONFIG", str(tmp_path / "docker"))


def test_without_a_login_the_error_says_how_to_log_in(locked: str) -> None:
    with pytest.raises(RegistryError) as info:
        RegistryClient(locked).resolve("mme-rep/interactive/sentinel3", "v1")
    assert "HTTP 401" in info.value.message
    assert info.value.hint and "login" in info.value.hint


def test_the_docker_config_login_is_used(locked: str, tmp_path: Path) -> None:
    (tmp_path / "docker").mkdir()
    auth = base64.b64encode(f"alice:{PASSWORD}".encode()).decode()
    (tmp_path / "docker" / "config.json").write_text(json.dumps({"auths": {locked: {
        "auth": auth}}}))
    digest = push_sample_image(locked, repo="mme-rep/interactive/sentinel3", tag="v1")
    assert RegistryClient(locked).resolve("mme-rep/interactive/sentinel3", "v1") == digest


def test_the_podman_auth_file_and_the_environment_are_used(
        locked: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    auth_file = tmp_path / "auth.json"
    auth_file.write_text(json.dumps({"auths": {locked: {"username": "alice",
                                                        "password": PASSWORD}}}))
    monkeypatch.setenv("REGISTRY_AUTH_FILE", str(auth_file))
    digest = push_sample_image(locked, repo="mme-rep/jupyter/sentinel3", tag="v2")
    monkeypatch.delenv("REGISTRY_AUTH_FILE")
    monkeypatch.setenv("MMEREP_REGISTRY_USER", "alice")
    monkeypatch.setenv("MMEREP_REGISTRY_PASSWORD", PASSWORD)
    assert RegistryClient(locked).resolve("mme-rep/jupyter/sentinel3", "v2") == digest


def test_a_wrong_password_is_refused_and_never_shown(
        locked: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MMEREP_REGISTRY_USER", "alice")
    monkeypatch.setenv("MMEREP_REGISTRY_PASSWORD", "not-the-password")
    with pytest.raises(RegistryError) as info:
        RegistryClient(locked).tags("mme-rep/interactive/sentinel3")
    assert "HTTP 401" in str(info.value) and "not-the-password" not in str(info.value)


def test_bearer_token_challenge_like_harbor(monkeypatch: pytest.MonkeyPatch) -> None:
    """Harbor answers 401 with a token service; the client fetches a token and retries."""
    issued: list[str] = []

    class Harborish(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            port = self.server.server_address[1]
            if self.path.startswith("/service/token"):
                expected = "Basic " + base64.b64encode(f"robot:{PASSWORD}".encode()).decode()
                if self.headers.get("Authorization") != expected:
                    self._send(401, {"errors": [{"code": "UNAUTHORIZED"}]})
                    return
                issued.append(self.path)
                self._send(200, {"token": "tok-123"})
            elif self.headers.get("Authorization") == "Bearer tok-123":
                self._send(200, {"name": "p/x", "tags": ["v1", "v2"]})
            else:
                self._send(401, {"errors": [{"code": "UNAUTHORIZED"}]}, {
                    "WWW-Authenticate": f'Bearer realm="http://127.0.0.1:{port}/service/token"'
                                        ',service="harbor-registry",'
                                        'scope="repository:p/x:pull"'})

        def do_HEAD(self) -> None:
            self.do_GET()

        def _send(self, code: int, body: dict, headers: dict | None = None) -> None:
            data = json.dumps(body).encode()
            self.send_response(code)
            for k, v in {"Content-Type": "application/json", **(headers or {})}.items():
                self.send_header(k, v)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(data)

        def log_message(self, *a: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Harborish)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        host = f"127.0.0.1:{server.server_address[1]}"
        monkeypatch.setenv("MMEREP_REGISTRY_USER", "robot")
        monkeypatch.setenv("MMEREP_REGISTRY_PASSWORD", PASSWORD)
        assert RegistryClient(host).tags("p/x") == ["v1", "v2"]
        assert issued and "service=harbor-registry" in issued[0]
        assert "scope=repository%3Ap%2Fx%3Apull" in issued[0]
    finally:
        server.shutdown()
