"""The resolved-kubeconfig cache: private files, invalidated by any change or expiry."""

from __future__ import annotations

import os
import stat
import time
from pathlib import Path

import pytest

from mmerep.kubehttp import (
    Connection,
    cache_key,
    forget_cached,
    kubeconfig_files,
    load_cached,
    save_cached,
)


@pytest.fixture(autouse=True)
def private_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("MMEREP_CACHE_DIR", str(tmp_path / "cache"))
    return tmp_path / "cache"


def _conn(**kw: object) -> Connection:
    return Connection(**{"host": "https://127.0.0.1:6443", "token": "Bearer t0ken", **kw})


def test_a_saved_connection_comes_back_with_its_files_readable_only_by_the_user(
        private_cache: Path) -> None:
    saved = save_cached("k1", _conn(), {"cert_file": b"CERT", "key_file": b"KEY"})
    back = load_cached("k1")
    assert back == saved
    assert back is not None and Path(back.key_file or "").read_bytes() == b"KEY"
    assert stat.S_IMODE((private_cache / "kube").stat().st_mode) == 0o700
    for f in (private_cache / "kube").iterdir():
        assert stat.S_IMODE(f.stat().st_mode) == 0o600, f


def test_an_expiring_token_is_not_used_in_its_last_minute() -> None:
    save_cached("soon", _conn(expires=time.time() + 30), {})
    save_cached("later", _conn(expires=time.time() + 3600), {})
    assert load_cached("soon") is None
    assert load_cached("later") is not None


def test_a_missing_certificate_file_or_a_forgotten_key_means_no_cache() -> None:
    saved = save_cached("k2", _conn(), {"cert_file": b"CERT"})
    Path(saved.cert_file or "").unlink()
    assert load_cached("k2") is None
    save_cached("k3", _conn(), {})
    forget_cached("k3")
    assert load_cached("k3") is None


def test_the_key_changes_with_the_kubeconfig_and_the_context(tmp_path: Path) -> None:
    config = tmp_path / "config"
    config.write_text("a: 1\n")
    first = cache_key([config], "ctx")
    assert first == cache_key([config], "ctx")
    assert first != cache_key([config], "other")
    config.write_text("a: 22\n")
    os.utime(config, ns=(time.time_ns(), time.time_ns() + 1000))
    assert cache_key([config], "ctx") != first
    assert cache_key([tmp_path / "missing"], "ctx") is None


def test_kubeconfig_files_follow_kubectl(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KUBECONFIG", f"/a/one{os.pathsep}/b/two")
    assert kubeconfig_files(None) == [Path("/a/one"), Path("/b/two")]
    assert kubeconfig_files("/c/explicit") == [Path("/c/explicit")]
    monkeypatch.delenv("KUBECONFIG")
    assert kubeconfig_files(None) == [Path.home() / ".kube" / "config"]


def test_a_token_file_is_read_at_each_use(tmp_path: Path) -> None:
    token = tmp_path / "token"
    token.write_text("first\n")
    conn = _conn(token=None, token_file=str(token))
    assert conn.authorization() == "Bearer first"
    token.write_text("rotated\n")
    assert conn.authorization() == "Bearer rotated"


def test_old_entries_are_pruned(private_cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import mmerep.kubehttp as kubehttp

    monkeypatch.setattr(kubehttp, "CACHE_ENTRIES", 3)
    for i in range(5):
        save_cached(f"k{i}", _conn(), {"cert_file": b"C"})
        os.utime(private_cache / "kube" / f"k{i}.json", (1000 + i, 1000 + i))
    save_cached("k5", _conn(), {"cert_file": b"C"})
    assert sorted(p.name for p in (private_cache / "kube").glob("*.json")) == [
        "k3.json", "k4.json", "k5.json"]
    assert not (private_cache / "kube" / "k0.cert_file.pem").exists()
