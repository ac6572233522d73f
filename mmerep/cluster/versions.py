"""Pinned versions of everything the local cluster is built from. Change them here only."""

from __future__ import annotations

KUBERNETES = "v1.36.3"
ETCD = "v3.6.16"
KWOK = "v0.8.0"
DISTRIBUTION = "v3.1.2"

# Kubernetes 1.36's go.mod declares `go 1.26.0`; an older toolchain cannot build it.
MIN_GO = (1, 26)

KUBERNETES_BINARIES = ("kube-apiserver", "kube-controller-manager", "kube-scheduler", "kubectl")
ETCD_BINARIES = ("etcd",)
KWOK_BINARIES = ("kwok", "kwokctl")
REGISTRY_BINARIES = ("registry",)
