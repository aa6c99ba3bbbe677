#!/usr/bin/env bash
# CI entry point for the Python client. From a fresh clone, with python3 (>= 3.10) installed:
#   clients/python/test.sh
# Checks the generated stubs against proto/ (generate.sh --check), builds the wheel and checks
# what it ships, then runs the whole suite twice, each in its own venv: on the newest releases
# the pins allow ($PSST_PY_VENV, default clients/python/.venv) and on the oldest (every ">=" floor
# of pyproject's dependencies pinned exactly; $PSST_PY_VENV_OLDEST, default .venv-oldest). Each
# run is pytest (unit tests, the shared conformance scenarios and live calls) under
# tests/conformance/with-agent, which needs the agent binaries in target/debug (or
# $PSST_BIN_DIR), and, as root, under tests/conformance/with-fake-agent; the asyncio runs of the
# resilience and Source scenarios get an agent session of their own.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
cd "$here"
python="${PYTHON:-python3}"
pip_quiet=(--quiet --disable-pip-version-check)

# venv DIR [CONSTRAINTS]: a venv with the client (editable) and its test extras.
venv() {
  local dir="$1" constraints="${2:-}"
  if ! "$dir/bin/python" -c "import sys; sys.exit(sys.version_info < (3, 10))" 2>/dev/null; then
    rm -rf "$dir"
    "$python" -m venv "$dir"
  fi
  if [ -n "$constraints" ]; then
    "$dir/bin/python" -m pip install "${pip_quiet[@]}" -c "$constraints" -e ".[test]"
  else
    "$dir/bin/python" -m pip install "${pip_quiet[@]}" --upgrade -e ".[test]"
  fi
  "$dir/bin/python" -m pip check
  "$dir/bin/python" -m pip list 2>/dev/null | grep -Ei '^(grpcio|grpcio-health-checking|protobuf) ' | tr -s ' ' | paste -sd, - | sed 's/^/   versions: /'
}

echo "== python: generated stubs vs proto/"
./generate.sh --check

newest="${PSST_PY_VENV:-$here/.venv}"
oldest="${PSST_PY_VENV_OLDEST:-$here/.venv-oldest}"
echo "== python: venv with the newest allowed grpcio/protobuf"
venv "$newest"

echo "== python: wheel"
wheels="$(mktemp -d)"
trap 'rm -rf "$wheels"' EXIT
"$newest/bin/python" -m pip wheel "${pip_quiet[@]}" --no-deps -w "$wheels" .
rm -rf "$here/build"  # setuptools' in-tree build dir
"$newest/bin/python" - "$wheels" <<'PY'
import glob, sys, zipfile
(wheel,) = glob.glob(sys.argv[1] + "/psst_client-*.whl")
names = set(zipfile.ZipFile(wheel).namelist())
need = {"psst/__init__.py", "psst/_client.py", "psst/_errors.py", "psst/_types.py", "psst/_watch.py",
        "psst/_peer.py", "psst/_source.py", "psst/_env.py", "psst/aio.py", "psst/settings.py",
        "psst/py.typed",
        "psst/v1/__init__.py", "psst/v1/psst_pb2.py", "psst/v1/psst_pb2.pyi", "psst/v1/psst_pb2_grpc.py"}
missing = need - names
if missing:
    sys.exit(f"the wheel lacks {sorted(missing)}")
print("wheel ok:", wheel.rsplit("/", 1)[1])
PY

echo "== python: venv with the oldest allowed grpcio/protobuf"
# Every ">=" floor of the runtime dependencies, pinned exactly.
"$newest/bin/python" - > "$wheels/floors.txt" <<'PY'
import re, tomllib
for dep in tomllib.load(open("pyproject.toml", "rb"))["project"]["dependencies"]:
    m = re.match(r"^([A-Za-z0-9_.-]+)\s*>=\s*([^,]+)", dep)
    if not m:
        raise SystemExit(f"pyproject dependency without a floor: {dep}")
    print(f"{m.group(1)}=={m.group(2).strip()}")
PY
sed 's/^/   floor: /' "$wheels/floors.txt"
venv "$oldest" "$wheels/floors.txt"
"$oldest/bin/python" - "$wheels/floors.txt" <<'PY'
import sys
from importlib.metadata import version
for line in open(sys.argv[1]):
    name, want = line.strip().split("==")
    if version(name) != want:
        sys.exit(f"{name} {version(name)} installed, want the floor {want}")
PY

# Under with-agent a missing PSST_CONFORMANCE must fail the run, not skip it.
export PSST_REQUIRE_AGENT=1
# As root, a fake agent run by a throwaway user checks that the client refuses to talk to it
# (tests/conformance/with-fake-agent); without root that test is skipped, and says so.
fake=()
if [ "$(id -u)" = 0 ]; then
  fake=(../../tests/conformance/with-fake-agent)
  export PSST_REQUIRE_FAKE_AGENT=1
else
  echo "(not root: the fake-agent-of-another-user test is skipped)"
fi
for v in "$newest" "$oldest"; do
  echo "== python ($v): tests against a live agent"
  "${fake[@]}" ../../tests/conformance/with-agent "$v/bin/python" -m pytest -v -m "not aio_live"
  echo "== python ($v): asyncio resilience and Source scenarios, against an agent of their own"
  ../../tests/conformance/with-agent "$v/bin/python" -m pytest -v -m aio_live
done
