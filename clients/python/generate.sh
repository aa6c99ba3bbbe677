#!/usr/bin/env bash
# Generates the Python stubs in src/psst/v1/ from ../../proto (the one API source):
#   ./generate.sh           regenerate src/psst/v1/
#   ./generate.sh --check   regenerate into a temp dir and fail if src/psst/v1/ differs (drift check)
# protoc comes from the pinned grpcio-tools wheel (PyPI), installed once into its own venv
# ($PSST_PY_TOOLS, default ~/.cache/psst/py-tools). The generated modules import themselves as
# `psst.v1.psst_pb2`, which is why they live in the psst package's v1 subpackage.
set -euo pipefail

GRPCIO_TOOLS_VERSION=1.63.2   # its protoc (26.1) makes protobuf 5.26 gencode: the floor of pyproject's pins

here="$(cd "$(dirname "$0")" && pwd)"
proto="$(cd "$here/../../proto" && pwd)"
mode="${1:-}"
case "$mode" in
  ""|--check) ;;
  *) echo "usage: $0 [--check]" >&2; exit 2 ;;
esac

python="${PYTHON:-python3}"
venv="${PSST_PY_TOOLS:-${XDG_CACHE_HOME:-$HOME/.cache}/psst/py-tools}/grpcio-tools-$GRPCIO_TOOLS_VERSION"
if ! "$venv/bin/python" -c "import grpc_tools.protoc" 2>/dev/null; then
  echo "generate.sh: installing grpcio-tools==$GRPCIO_TOOLS_VERSION into $venv (once)" >&2
  rm -rf "$venv"
  "$python" -m venv "$venv"
  "$venv/bin/python" -m pip install --quiet --disable-pip-version-check "grpcio-tools==$GRPCIO_TOOLS_VERSION"
fi

out="$(mktemp -d)"
trap 'rm -rf "$out"' EXIT
(cd "$proto" && "$venv/bin/python" -m grpc_tools.protoc -I . \
  --python_out="$out" --pyi_out="$out" --grpc_python_out="$out" psst/v1/psst.proto)
cat > "$out/psst/v1/__init__.py" <<'PY'
"""Generated gRPC stubs for psst.v1 (proto/psst/v1/psst.proto). Regenerate with generate.sh."""
PY

if [ "$mode" = --check ]; then
  if ! diff -r -x __pycache__ "$out/psst/v1" "$here/src/psst/v1"; then
    echo "generate.sh --check: clients/python/src/psst/v1 is out of date with proto/; run clients/python/generate.sh" >&2
    exit 1
  fi
  echo "generate.sh --check: clients/python/src/psst/v1 matches proto/"
else
  rm -rf "$here/src/psst/v1"
  cp -r "$out/psst/v1" "$here/src/psst/v1"
  echo "generate.sh: wrote clients/python/src/psst/v1"
fi
