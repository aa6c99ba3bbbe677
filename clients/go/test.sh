#!/usr/bin/env bash
# CI entry point for the Go client. From a fresh clone, with Go installed:
#   clients/go/test.sh
# Downloads the module's dependencies (Go module proxy), checks the generated stubs against
# proto/ (generate.sh --check), vets, and runs every test (unit, then the shared conformance
# scenarios and live calls) under tests/conformance/with-agent, which needs the agent binaries in
# target/debug (or $PSST_BIN_DIR), and as root under tests/conformance/with-fake-agent too.
set -euo pipefail
cd "$(dirname "$0")"

echo "== go: dependencies"
go mod download
go mod verify

echo "== go: generated stubs vs proto/"
./generate.sh --check

echo "== go: gofmt, vet"
unformatted="$(gofmt -l .)"
if [ -n "$unformatted" ]; then
  echo "gofmt needed on: $unformatted" >&2
  exit 1
fi
go vet ./...

echo "== go: tests against a live agent"
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
"${fake[@]}" ../../tests/conformance/with-agent go test -count=1 -v ./...
