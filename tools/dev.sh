#!/usr/bin/env bash
# Sets up .venv from a fresh clone (once) and runs one task in it.
#   bash tools/dev.sh test [PYTEST ARGS...]   the test suite (what CI runs; 2 workers)
#   bash tools/dev.sh demo [--out DIR]         the end-to-end demo
#   bash tools/dev.sh bench [--only STEPS]     rerun the docs' measurements (tools/bench_docs.py)
#   bash tools/dev.sh shell                    a shell inside the environment
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
venv="$root/.venv"
stamp="$venv/.colvlm-installed"
python=${PYTHON:-python3}

# Re-install only when the dependency declarations changed since the last install.
want=$(cat pyproject.toml tools/constraints-cpu.txt | sha256sum | cut -c1-16)
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
  echo "colvlm: setting up $venv" >&2
  "$python" -m venv "$venv"
  "$venv/bin/python" -m pip install --quiet --upgrade pip
  "$venv/bin/python" -m pip install --quiet -c tools/constraints-cpu.txt -e '.[test]'
  echo "$want" > "$stamp"
fi

export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1
task=${1:-test}
shift || true
# The lossy-link test and linkbench build network namespaces with ip, tc and nft; as root on
# Debian, fetch nft when it is missing (without it they skip and say why).
need_nft() {
  if [ "$(id -u)" = 0 ] && ! command -v nft >/dev/null && command -v apt-get >/dev/null; then
    apt-get install -y -qq nftables >/dev/null 2>&1 || echo "colvlm: could not install nftables" >&2
  fi
}
case "$task" in
  test)
    need_nft
    # Two workers (pytest-xdist), whole files per worker so module fixtures load once; each
    # worker gets its own DDS domains (test/conftest.py). COLVLM_TEST_WORKERS=0 runs serially.
    exec "$venv/bin/python" -m pytest -n "${COLVLM_TEST_WORKERS:-2}" --dist loadfile "$@" ;;
  demo) exec "$venv/bin/colvlm" demo "$@" ;;
  bench) need_nft; exec "$venv/bin/python" -m tools.bench_docs "$@" ;;
  shell) exec bash --rcfile <(echo "source '$venv/bin/activate'") -i ;;
  *) echo "usage: bash tools/dev.sh test|demo|bench|shell [ARGS...]" >&2; exit 2 ;;
esac
