#!/usr/bin/env bash
# Generates the Go stubs in psstv1/ from ../../proto (the one API source) with pinned tools:
#   ./generate.sh           regenerate psstv1/
#   ./generate.sh --check   regenerate into a temp dir and fail if psstv1/ differs (drift check)
# The tools come from the Go module proxy (`go install`), built once into a versioned cache dir
# ($PSST_GO_TOOLS, default ~/.cache/psst/go-tools). There is no system protoc: buf compiles the
# proto itself and ships google/protobuf/timestamp.proto.
set -euo pipefail

BUF_VERSION=v1.75.0
PROTOC_GEN_GO_VERSION=v1.36.12        # keep equal to google.golang.org/protobuf in go.mod
PROTOC_GEN_GO_GRPC_VERSION=v1.6.2

here="$(cd "$(dirname "$0")" && pwd)"
proto="$(cd "$here/../../proto" && pwd)"
mode="${1:-}"
case "$mode" in
  ""|--check) ;;
  *) echo "usage: $0 [--check]" >&2; exit 2 ;;
esac

tools="${PSST_GO_TOOLS:-${XDG_CACHE_HOME:-$HOME/.cache}/psst/go-tools}/buf-$BUF_VERSION.go-$PROTOC_GEN_GO_VERSION.grpc-$PROTOC_GEN_GO_GRPC_VERSION"
install() { # install NAME PACKAGE VERSION
  if [ ! -x "$tools/$1" ]; then
    echo "generate.sh: installing $2@$3 (once; cached in $tools)" >&2
    (cd / && GOBIN="$tools" GOFLAGS=-buildvcs=false go install "$2@$3")
  fi
}
install buf github.com/bufbuild/buf/cmd/buf "$BUF_VERSION"
install protoc-gen-go google.golang.org/protobuf/cmd/protoc-gen-go "$PROTOC_GEN_GO_VERSION"
install protoc-gen-go-grpc google.golang.org/grpc/cmd/protoc-gen-go-grpc "$PROTOC_GEN_GO_GRPC_VERSION"

out="$(mktemp -d)"
trap 'rm -rf "$out"' EXIT
PATH="$tools:$PATH" BUF_CACHE_DIR="${BUF_CACHE_DIR:-$out/.buf-cache}" \
  buf generate "$proto" --template "$here/buf.gen.yaml" --output "$out"

if [ "$mode" = --check ]; then
  if ! diff -r "$out/psstv1" "$here/psstv1"; then
    echo "generate.sh --check: clients/go/psstv1 is out of date with proto/; run clients/go/generate.sh" >&2
    exit 1
  fi
  echo "generate.sh --check: clients/go/psstv1 matches proto/"
else
  rm -rf "$here/psstv1"
  cp -r "$out/psstv1" "$here/psstv1"
  echo "generate.sh: wrote clients/go/psstv1"
fi
