"""Build the local cluster's binaries from pinned Go modules, once, into a versioned cache.

Release binaries cannot be downloaded here, but the Go module proxy can be reached, so
every binary is compiled from its module at the pinned version. Kubernetes and etcd
carry ``replace`` directives that only apply inside their own repositories, so each is
built from a small wrapper module that repeats those replacements with real versions.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from mmerep.cluster import versions
from mmerep.errors import BuildError, ToolchainError
from mmerep.paths import cache_dir

OnStep = Callable[[str], None]  # told each step of long work, as one line of text


def _quiet(_: str) -> None:
    pass


@dataclass(frozen=True)
class Component:
    """One group of binaries built by a single ``go build`` from one module version."""

    name: str
    module: str
    version: str
    packages: tuple[str, ...]
    binaries: tuple[str, ...]

    @property
    def key(self) -> str:
        return f"{self.name}-{self.version}"


KUBERNETES = Component(
    "kubernetes", "k8s.io/kubernetes", versions.KUBERNETES,
    tuple(f"k8s.io/kubernetes/cmd/{b}" for b in versions.KUBERNETES_BINARIES),
    versions.KUBERNETES_BINARIES,
)
ETCD = Component(
    "etcd", "go.etcd.io/etcd/server/v3", versions.ETCD,
    ("go.etcd.io/etcd/server/v3",), versions.ETCD_BINARIES,
)
KWOK = Component(
    "kwok", "sigs.k8s.io/kwok", versions.KWOK,
    tuple(f"sigs.k8s.io/kwok/cmd/{b}" for b in versions.KWOK_BINARIES), versions.KWOK_BINARIES,
)
REGISTRY = Component(
    "distribution", "github.com/distribution/distribution/v3", versions.DISTRIBUTION,
    ("github.com/distribution/distribution/v3/cmd/registry",), versions.REGISTRY_BINARIES,
)
COMPONENTS = (ETCD, KWOK, REGISTRY, KUBERNETES)


def bin_dir(component: Component) -> Path:
    return cache_dir() / "bin" / component.key


def binary_path(name: str) -> Path:
    for component in COMPONENTS:
        if name in component.binaries:
            return bin_dir(component) / name
    raise KeyError(name)


def is_built(component: Component) -> bool:
    d = bin_dir(component)
    return (d / ".complete").is_file() and all((d / b).is_file() for b in component.binaries)


def go_version() -> tuple[int, int]:
    """The machine's Go version, or a ToolchainError saying how to get a usable one."""
    go = shutil.which("go")
    if go is None:
        raise ToolchainError(
            "go is not installed; the local cluster is built from source with it",
            hint=f"install Go {'.'.join(map(str, versions.MIN_GO))} or newer, on PATH",
        )
    out = subprocess.run([go, "env", "GOVERSION"], capture_output=True, text=True, check=False)
    match = re.match(r"go(\d+)\.(\d+)", out.stdout.strip())
    if out.returncode != 0 or match is None:
        raise ToolchainError(f"could not read the Go version from {go}: {out.stderr.strip()}")
    found = (int(match.group(1)), int(match.group(2)))
    if found < versions.MIN_GO:
        need = ".".join(map(str, versions.MIN_GO))
        raise ToolchainError(
            f"go {found[0]}.{found[1]} is too old to build Kubernetes {versions.KUBERNETES}",
            hint=f"install Go {need} or newer",
        )
    return found


def _go_env() -> dict[str, str]:
    env = dict(os.environ)
    env.update(GOWORK="off", GOTOOLCHAIN="local", CGO_ENABLED="0", GOFLAGS="-mod=mod")
    return env


def _go(args: list[str], cwd: Path, log: Path, progress: OnStep, what: str) -> None:
    """Run go, streaming its output to ``log`` and reporting each compiled package."""
    count = 0
    with log.open("a") as sink:
        sink.write(f"$ go {' '.join(args)}\n")
        sink.flush()
        proc = subprocess.Popen(
            ["go", *args], cwd=cwd, env=_go_env(), stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT, text=True,
        )
        assert proc.stdout is not None
        for line in proc.stdout:
            sink.write(line)
            if not line.startswith((" ", "\t", "#")):
                count += 1
                progress(f"{what}: {count} packages ({line.strip()[:60]})")
        rc = proc.wait()
    if rc != 0:
        tail = log.read_text().splitlines()[-5:]
        raise BuildError(
            f"{what} failed (go exited {rc}): {' | '.join(tail)}", hint=f"full log in {log}"
        )


def _module_gomod(module: str, version: str, cwd: Path, log: Path) -> str:
    """The go.mod of ``module@version`` as published on the module proxy."""
    out = subprocess.run(
        ["go", "mod", "download", "-json", f"{module}@{version}"], cwd=cwd, env=_go_env(),
        capture_output=True, text=True, check=False,
    )
    if out.returncode != 0:
        with log.open("a") as sink:
            sink.write(out.stdout + out.stderr)
        raise BuildError(
            f"could not download {module}@{version}: {out.stderr.strip() or out.stdout.strip()}",
            hint="check that the Go module proxy is reachable (GOPROXY)",
        )
    return Path(json.loads(out.stdout)["GoMod"]).read_text()


def local_replacements(gomod: str) -> list[str]:
    """Modules a go.mod replaces with a directory inside its own repository."""
    return re.findall(r"^\s*(?:replace\s+)?(\S+)\s+=>\s+\.{1,2}/\S+\s*$", gomod, re.M)


def wrapper_gomod(component: Component, published_gomod: str) -> str:
    """A go.mod that requires ``component`` and pins its in-repo replacements to versions.

    Kubernetes' staging modules are published as ``v0.<minor>.<patch>`` for
    ``v1.<minor>.<patch>``; etcd's sibling modules share etcd's own version.
    """
    is_k8s = component is KUBERNETES
    sibling_version = "v0" + component.version[2:] if is_k8s else component.version
    lines = [
        f"module mmerep.local/build/{component.name}",
        "",
        f"go {versions.MIN_GO[0]}.{versions.MIN_GO[1]}",
        "",
        f"require {component.module} {component.version}",
    ]
    replaced = [m for m in local_replacements(published_gomod) if m != "go.etcd.io/etcd"]
    replaced = [m for m in replaced if not m.startswith("go.etcd.io/tests")]
    if replaced:
        lines += ["", "replace ("]
        lines += [f"\t{m} => {m} {sibling_version}" for m in sorted(set(replaced))]
        lines.append(")")
    return "\n".join(lines) + "\n"


def _ldflags(component: Component) -> str:
    flags = ["-s", "-w"]
    if component is KUBERNETES:
        major, minor = component.version[1:].split(".")[:2]
        for pkg in ("k8s.io/component-base/version", "k8s.io/client-go/pkg/version"):
            flags += [
                f"-X {pkg}.gitVersion={component.version}",
                f"-X {pkg}.gitMajor={major}",
                f"-X {pkg}.gitMinor={minor}",
                f"-X {pkg}.gitTreeState=clean",
                f"-X {pkg}.buildDate=1970-01-01T00:00:00Z",
            ]
    elif component is KWOK:
        flags.append(f"-X sigs.k8s.io/kwok/pkg/consts.Version={component.version}")
        flags.append(f"-X sigs.k8s.io/kwok/pkg/consts.KubeVersion={versions.KUBERNETES}")
    return " ".join(flags)


def build_component(component: Component, progress: OnStep = _quiet) -> Path:
    """Build one component into its cache directory (no-op when already built)."""
    out_dir = bin_dir(component)
    if is_built(component):
        return out_dir
    work = cache_dir() / "build" / component.key
    work.mkdir(parents=True, exist_ok=True)
    log = work / "build.log"
    log.write_text("")
    progress(f"{component.name} {component.version}: resolving modules")
    (work / "go.mod").write_text(f"module mmerep.local/build/{component.name}\n\ngo 1.26\n")
    published = _module_gomod(component.module, component.version, work, log)
    (work / "go.mod").write_text(wrapper_gomod(component, published))
    (work / "go.sum").unlink(missing_ok=True)
    staging = out_dir.with_name(out_dir.name + ".partial")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    _go(["mod", "download"], work, log, progress, f"{component.name}: downloading")
    # One package would be named after its directory ("server" for etcd): name it ourselves.
    target = staging / component.binaries[0] if len(component.packages) == 1 else staging
    _go(
        ["build", "-v", "-trimpath", "-ldflags", _ldflags(component), "-o", f"{target}/"
         if target == staging else str(target), *component.packages],
        work, log, progress, f"building {component.name} {component.version}",
    )
    missing = [b for b in component.binaries if not (staging / b).is_file()]
    if missing:
        raise BuildError(f"{component.name} build produced no {', '.join(missing)}",
                         hint=f"see {log}")
    (staging / ".complete").write_text(time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()))
    shutil.rmtree(out_dir, ignore_errors=True)
    staging.rename(out_dir)
    return out_dir


def ensure_binaries(progress: OnStep = _quiet) -> dict[str, Path]:
    """Every binary the local cluster needs, building what is missing."""
    if not all(is_built(c) for c in COMPONENTS):
        go_version()
    for component in COMPONENTS:
        build_component(component, progress)
    return {b: bin_dir(c) / b for c in COMPONENTS for b in c.binaries}
