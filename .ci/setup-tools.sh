#!/usr/bin/env bash
# Installs what the pipeline tests (tests/pipeline) and bench/bench_pipeline.py need, when
# missing: buildah, skopeo, rsync, git and prometheus (with promtool) from apt; for the SSH tests (tests/cluster/test_ssh.py)
# OpenSSH's server and client (and nc for bench/bench_ssh.py), and, when run as root, the unprivileged user
# `mmerep-ssh` their sshd runs as (sshd runs non-root, as in the pods); gitlab-ci-local 4.65.x from npm into
# mme-rep's cache (<cache>/npm, where the tests look; <cache> is $MMEREP_CACHE_DIR, else
# $XDG_CACHE_HOME/mme-rep, else ~/.cache/mme-rep). Idempotent and quiet: prints nothing
# when everything is there. Trivy is not installed (not available here): the tests run
# the pipeline with scanning off.
set -euo pipefail

GCL_VERSION=4.65
cache="${MMEREP_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/mme-rep}"
prefix="$cache/npm"
log="$cache/setup-tools.log"

die() { printf 'setup-tools: %s\n' "$*" >&2; exit 1; }

mkdir -p "$cache"

missing=()
for tool in buildah skopeo rsync git; do
  command -v "$tool" >/dev/null 2>&1 || missing+=("$tool")
done
# The monitoring tests run a real Prometheus and promtool (both in Debian's package).
if ! command -v prometheus >/dev/null 2>&1 || ! command -v promtool >/dev/null 2>&1; then
  missing+=(prometheus)
fi
[ -x /usr/sbin/sshd ] || missing+=(openssh-server)
command -v ssh >/dev/null 2>&1 && command -v ssh-keygen >/dev/null 2>&1 \
  && command -v scp >/dev/null 2>&1 || missing+=(openssh-client)
command -v nc >/dev/null 2>&1 || missing+=(netcat-openbsd)  # bench ssh: the kubectl recipe
# The provisioner's tests give each simulated node loop-mounted XFS images as disks.
command -v mkfs.xfs >/dev/null 2>&1 || [ -x /usr/sbin/mkfs.xfs ] || missing+=(xfsprogs)
# The console's browser tests (tests/cluster/test_console.py) drive headless Chromium.
command -v chromium >/dev/null 2>&1 || missing+=(chromium)
[ -x /usr/bin/chromedriver ] || missing+=(chromium-driver)
if [ "${#missing[@]}" -gt 0 ]; then
  sudo=""
  if [ "$(id -u)" -ne 0 ]; then
    command -v sudo >/dev/null 2>&1 || die "need root (or sudo) to apt-get install ${missing[*]}"
    sudo="sudo"
  fi
  command -v apt-get >/dev/null 2>&1 || die "no apt-get: install ${missing[*]} with your package manager"
  echo "setup-tools: installing ${missing[*]} (apt-get)..." >&2
  export DEBIAN_FRONTEND=noninteractive
  # Update the package lists only when installing from the current ones fails.
  if ! $sudo apt-get install -y -q --no-install-recommends "${missing[@]}" >"$log" 2>&1; then
    $sudo apt-get update -q >>"$log" 2>&1 || { tail -n 5 "$log" >&2; die "apt-get update failed (log: $log)"; }
    $sudo apt-get install -y -q --no-install-recommends "${missing[@]}" >>"$log" 2>&1 \
      || { tail -n 5 "$log" >&2; die "apt-get install ${missing[*]} failed (log: $log)"; }
  fi
fi

gcl="$prefix/node_modules/.bin/gitlab-ci-local"
current=""
if [ -x "$gcl" ]; then current="$("$gcl" --version 2>/dev/null || true)"; fi
case "$current" in
  "$GCL_VERSION".*) ;;
  *)
    command -v npm >/dev/null 2>&1 || die "npm not found: install Node.js 20 (and npm) for gitlab-ci-local"
    node_major="$(node -p 'process.versions.node.split(".")[0]' 2>/dev/null || echo 0)"
    [ "$node_major" -ge 18 ] || die "gitlab-ci-local $GCL_VERSION needs Node.js >= 18 (found $(node --version 2>/dev/null || echo none))"
    echo "setup-tools: installing gitlab-ci-local@$GCL_VERSION into $prefix (npm)..." >&2
    mkdir -p "$prefix"
    npm install --prefix "$prefix" --no-audit --no-fund --loglevel=error \
      "gitlab-ci-local@$GCL_VERSION" >>"$log" 2>&1 \
      || { tail -n 5 "$log" >&2; die "npm install gitlab-ci-local@$GCL_VERSION failed (log: $log)"; }
    "$gcl" --version >/dev/null 2>&1 || die "gitlab-ci-local did not install at $gcl (log: $log)"
    ;;
esac

# The SSH tests run sshd as an unprivileged user; as root, that is this one.
if [ "$(id -u)" -eq 0 ] && ! id mmerep-ssh >/dev/null 2>&1; then
  useradd --system --create-home --home-dir /var/lib/mmerep-ssh --shell /bin/sh mmerep-ssh \
    >>"$log" 2>&1 || die "useradd mmerep-ssh failed (log: $log)"
fi
