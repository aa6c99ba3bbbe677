#!/usr/bin/env bash
# Regenerates the TypeScript types from the one API source, ../../proto/psst/v1/psst.proto.
#
#   scripts/gen.sh           copy the proto into proto/ and regenerate src/generated/ (checked in):
#                            the types (proto-loader-gen-types) and descriptor.ts, the JSON
#                            descriptor the client loads with proto-loader's fromJSON, so that no
#                            .proto file is read at run time (the package ships none; bundles work)
#   scripts/gen.sh --check   regenerate both into a temp dir and fail if they differ from what is
#                            checked in (the drift check; changes nothing)
#
# proto/grpc/health/v1/health.proto is the upstream gRPC health API, vendored as is.
# Needs node_modules (npm ci) for proto-loader-gen-types.
set -euo pipefail
here="$(cd "$(dirname "$0")/.." && pwd)"
api="$(cd "$here/../../proto" && pwd)"
gen="$here/node_modules/.bin/proto-loader-gen-types"
[ -x "$gen" ] || { echo "gen.sh: $gen is missing: run npm ci first" >&2; exit 1; }

# The options must match LOADER_OPTIONS in src/transport.ts.
generate() { # OUT_DIR: writes OUT_DIR/proto and OUT_DIR/src/generated
  local out="$1"
  mkdir -p "$out/proto/psst/v1" "$out/proto/grpc/health/v1" "$out/src/generated"
  cp "$api/psst/v1/psst.proto" "$out/proto/psst/v1/psst.proto"
  cp "$here/proto/grpc/health/v1/health.proto" "$out/proto/grpc/health/v1/health.proto"
  # Relative paths, so that the "Original file:" comments do not name the temp dir.
  (cd "$out" && "$gen" --grpcLib=@grpc/grpc-js --longs=String --enums=String --defaults --oneofs \
    --includeComments -I proto -O src/generated \
    psst/v1/psst.proto grpc/health/v1/health.proto >/dev/null)
  node "$here/scripts/descriptor.js" "$out/proto" > "$out/src/generated/descriptor.ts"
}

if [ "${1:-}" = "--check" ]; then
  tmp="$(mktemp -d)"
  trap 'rm -rf "$tmp"' EXIT
  generate "$tmp"
  status=0
  diff -ru "$tmp/proto/psst" "$here/proto/psst" || status=1
  diff -ru "$tmp/src/generated" "$here/src/generated" || status=1
  if [ "$status" != 0 ]; then
    echo "drift check: FAILED: clients/typescript is out of date with proto/; run: npm run gen" >&2
    exit 1
  fi
  echo "drift check: ok (proto/psst and src/generated match ../../proto)"
else
  tmp="$(mktemp -d)"
  trap 'rm -rf "$tmp"' EXIT
  generate "$tmp"
  rm -rf "$here/proto/psst" "$here/src/generated"
  cp -r "$tmp/proto/psst" "$here/proto/psst"
  cp -r "$tmp/src/generated" "$here/src/generated"
  echo "generated proto/psst and src/generated from ../../proto"
fi
