#!/usr/bin/env bash
# The entry point users type. First use: a virtual environment in .venv with mme-rep in it.
#   ./mme-rep.sh <command> ...   run mme-rep (see ./mme-rep.sh --help)
#   ./mme-rep.sh test [pytest args]   ruff, mypy, import contracts, then the whole test suite
#   ./mme-rep.sh test unit [pytest args]   only the pure tests (seconds; builds nothing)
#   ./mme-rep.sh demo            bring up the local cluster and run the main job on it
#   ./mme-rep.sh bench           run the benchmarks in bench/ and print ratios
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
venv="${MMEREP_VENV:-$here/.venv}"
python="${MMEREP_PYTHON:-$(command -v python3 || true)}"

die() { printf 'mme-rep: %s\n' "$*" >&2; exit 1; }

ensure_venv() {
  local extra="$1" stamp want
  [ -n "$python" ] || die "python3 not found; install Python 3.11 or newer"
  "$python" -c 'import sys; sys.exit(sys.version_info < (3, 11))' \
    || die "Python 3.11 or newer is needed ($python is $("$python" -V 2>&1))"
  if [ ! -x "$venv/bin/python" ]; then
    echo "mme-rep: creating a virtual environment in ${venv#"$here"/} (first run only)..." >&2
    "$python" -m venv "$venv" || die "could not create $venv (is the venv module installed?)"
  fi
  stamp="$venv/.mmerep-installed$extra"
  # "compat": a plain path in a .pth file; the default editable finder is imported by every
  # Python start in the venv (~18 ms of each command's ~60).
  want="$(cat "$here/pyproject.toml" | cksum) compat"
  if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
    echo "mme-rep: installing mme-rep${extra:+ with its $extra extra} into the virtual environment..." >&2
    local log="$venv/install.log"
    if ! "$venv/bin/python" -m pip install --disable-pip-version-check -q \
        --config-settings editable_mode=compat -e "$here${extra:+[$extra]}" >"$log" 2>&1; then
      tail -n 20 "$log" >&2
      die "installing dependencies failed (full log: $log)"
    fi
    echo "$want" >"$stamp"
  fi
  # Byte-compile our own modules as an installed package is, when a source file changed:
  # with PYTHONDONTWRITEBYTECODE set, every command would otherwise compile them again.
  local compiled="$venv/.mmerep-compiled"
  if [ ! -f "$compiled" ] || [ -n "$(find "$here/mmerep" "$here/provisioner" -name '*.py' \
      -newer "$compiled" -print -quit)" ]; then
    touch "$compiled"
    "$venv/bin/python" -m compileall -q "$here/mmerep" "$here/provisioner" >/dev/null 2>&1 || true
  fi
}

run_mmerep() { "$venv/bin/python" -m mmerep "$@"; }

case "${1:-}" in
  test)
    shift
    if [ "${1:-}" = unit ]; then
      # The fast tier: pure tests, no cluster binaries built or tools installed.
      shift
      ensure_venv test
      cd "$here"
      exec "$venv/bin/python" -m pytest -m "not cluster and not pipeline" tests/unit "$@"
    fi
    ensure_venv test
    cd "$here"
    echo "== ruff" && "$venv/bin/ruff" check mmerep provisioner tests bench testkit
    echo "== mypy" && "$venv/bin/mypy"
    echo "== import contracts" && "$venv/bin/lint-imports" --no-cache
    echo "== cluster binaries" && run_mmerep cluster build
    echo "== pipeline tools" && bash "$here/.ci/setup-tools.sh"
    echo "== pytest" && exec "$venv/bin/python" -m pytest "$@"
    ;;
  demo)
    shift
    ensure_venv ""
    run_mmerep demo "$@"
    ;;
  bench)
    shift
    ensure_venv test
    exec "$venv/bin/python" "$here/bench/run.py" "$@"
    ;;
  *)
    ensure_venv ""
    run_mmerep "$@"
    ;;
esac
