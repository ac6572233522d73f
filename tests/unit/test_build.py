"""How the cluster binaries are built, checked as data (no Go build here)."""

from __future__ import annotations

from mmerep.cluster import build, versions

K8S_GOMOD = """module k8s.io/kubernetes

go 1.26.0

require (
\tk8s.io/api v0.0.0
\tgithub.com/spf13/cobra v1.10.2
)

replace (
\tk8s.io/api => ./staging/src/k8s.io/api
\tk8s.io/client-go => ./staging/src/k8s.io/client-go
)
"""

ETCD_GOMOD = """module go.etcd.io/etcd/server/v3

replace (
\tgo.etcd.io/etcd/api/v3 => ../api
\tgo.etcd.io/etcd/pkg/v3 => ../pkg
)

// Bad imports are sometimes causing attempts to pull that code.
replace go.etcd.io/etcd => ./FORBIDDEN_DEPENDENCY

replace go.etcd.io/tests/v3 => ./FORBIDDEN_DEPENDENCY
"""


def test_kubernetes_staging_modules_are_pinned_to_the_matching_v0_release() -> None:
    out = build.wrapper_gomod(build.KUBERNETES, K8S_GOMOD)
    minor_patch = versions.KUBERNETES[2:]
    assert f"require k8s.io/kubernetes {versions.KUBERNETES}" in out
    assert f"\tk8s.io/api => k8s.io/api v0{minor_patch}" in out
    assert f"\tk8s.io/client-go => k8s.io/client-go v0{minor_patch}" in out
    assert "cobra" not in out  # only in-repo replacements are repeated


def test_etcd_siblings_share_etcds_version_and_forbidden_markers_are_dropped() -> None:
    out = build.wrapper_gomod(build.ETCD, ETCD_GOMOD)
    assert f"go.etcd.io/etcd/api/v3 => go.etcd.io/etcd/api/v3 {versions.ETCD}" in out
    assert f"go.etcd.io/etcd/pkg/v3 => go.etcd.io/etcd/pkg/v3 {versions.ETCD}" in out
    assert "FORBIDDEN" not in out and "go.etcd.io/tests" not in out


def test_binaries_are_cached_per_version(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("MMEREP_CACHE_DIR", str(tmp_path))
    path = build.binary_path("kube-apiserver")
    assert path == tmp_path / "bin" / f"kubernetes-{versions.KUBERNETES}" / "kube-apiserver"
    assert not build.is_built(build.KUBERNETES)
    path.parent.mkdir(parents=True)
    for b in build.KUBERNETES.binaries:
        (path.parent / b).write_text("")
    assert not build.is_built(build.KUBERNETES)  # no completion stamp: a broken build
    (path.parent / ".complete").write_text("")
    assert build.is_built(build.KUBERNETES)


def test_kubernetes_version_is_stamped_into_the_binaries() -> None:
    flags = build._ldflags(build.KUBERNETES)
    assert f"k8s.io/component-base/version.gitVersion={versions.KUBERNETES}" in flags
    assert "k8s.io/component-base/version.gitMinor=36" in flags
