#!/usr/bin/env bash
# The Python package (bindings/python, issue #23): a fresh virtual environment under a scratch
# dir, everything from PyPI at pinned versions, the wheel built by maturin, then pytest against
# real FastAPI/uvicorn, Flask/werkzeug and Strawberry apps and a local JWKS server.
#
#   scripts/python.sh            # build the wheel, install it, run bindings/python/tests and examples/python
#   KEEP_VENV=1 scripts/python.sh  # reuse the environment of the last run (faster on a developer's machine)
set -euo pipefail
cd "$(dirname "$0")/.."
root="$PWD"

scratch="${TOKENGATE_PY_SCRATCH:-${TMPDIR:-/tmp}/tokengate-python}"
python="${PYTHON:-python3}"
if [ -z "${KEEP_VENV:-}" ] || [ ! -x "$scratch/venv/bin/python" ]; then
    rm -rf "$scratch"
    mkdir -p "$scratch"
    # Debian's python3 ships venv separately.
    "$python" -m venv "$scratch/venv" 2>/dev/null || {
        apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y python3-venv python3-dev
        "$python" -m venv "$scratch/venv"
    }
fi
venv="$scratch/venv"
"$venv/bin/python" -m pip install --quiet --disable-pip-version-check \
    maturin==1.16.0 pytest==9.2.0 fastapi==0.163.2 uvicorn==0.54.0 flask==3.1.3 werkzeug==3.1.9 \
    strawberry-graphql==0.341.2 httpx==0.28.1 'pyjwt[crypto]==2.15.1' cryptography==50.0.2

# `--profile wheel` (bindings/python/Cargo.toml): release code without thin LTO, whose link
# step alone takes minutes on two cores. Its own target dir: the root workspace's is untouched.
rm -rf "$scratch/dist"
(cd bindings/python && "$venv/bin/maturin" build --profile wheel --interpreter "$venv/bin/python" --out "$scratch/dist")
"$venv/bin/python" -m pip install --quiet --disable-pip-version-check --force-reinstall --no-deps "$scratch"/dist/tokengate-*.whl

# The installed wheel is what is tested, never the source tree (tests/test_ogx.py runs examples/python too).
cd "$scratch"
"$venv/bin/python" -m pytest -q -p no:cacheprovider "$root/bindings/python/tests"
