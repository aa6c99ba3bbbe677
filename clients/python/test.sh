#!/usr/bin/env bash
# CI entry point for the Python client. From a fresh clone, with python3 (>= 3.10) installed:
#   clients/python/test.sh
# Makes a venv ($PSST_PY_VENV, default clients/python/.venv), installs the client editable with
# its test extras from PyPI, checks the generated stubs against proto/ (generate.sh --check),
# builds the wheel and checks what it ships, then runs pytest (unit tests, the shared
# conformance scenarios and live calls) under tests/conformance/with-agent, which needs the
# agent binaries in target/debug (or $PSST_BIN_DIR).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
cd "$here"
python="${PYTHON:-python3}"
venv="${PSST_PY_VENV:-$here/.venv}"
pip_quiet=(--quiet --disable-pip-version-check)

echo "== python: venv and dependencies"
if ! "$venv/bin/python" -c "import sys; sys.exit(sys.version_info < (3, 10))" 2>/dev/null; then
  rm -rf "$venv"
  "$python" -m venv "$venv"
fi
"$venv/bin/python" -m pip install "${pip_quiet[@]}" -e ".[test]"
"$venv/bin/python" -m pip check

echo "== python: generated stubs vs proto/"
./generate.sh --check

echo "== python: wheel"
wheels="$(mktemp -d)"
trap 'rm -rf "$wheels"' EXIT
"$venv/bin/python" -m pip wheel "${pip_quiet[@]}" --no-deps -w "$wheels" .
rm -rf "$here/build"  # setuptools' in-tree build dir
"$venv/bin/python" - "$wheels" <<'PY'
import glob, sys, zipfile
(wheel,) = glob.glob(sys.argv[1] + "/psst_client-*.whl")
names = set(zipfile.ZipFile(wheel).namelist())
need = {"psst/__init__.py", "psst/_client.py", "psst/_errors.py", "psst/_types.py", "psst/_watch.py",
        "psst/py.typed",
        "psst/v1/__init__.py", "psst/v1/psst_pb2.py", "psst/v1/psst_pb2.pyi", "psst/v1/psst_pb2_grpc.py"}
missing = need - names
if missing:
    sys.exit(f"the wheel lacks {sorted(missing)}")
print("wheel ok:", wheel.rsplit("/", 1)[1])
PY

echo "== python: tests against a live agent"
# Under with-agent a missing PSST_CONFORMANCE must fail the run, not skip it.
export PSST_REQUIRE_AGENT=1
../../tests/conformance/with-agent "$venv/bin/python" -m pytest -v
