#!/usr/bin/env bash
# CI entry point for the TypeScript client. From a fresh clone, with Node >= 18 and npm:
#   clients/typescript/test.sh
# installs the locked dependencies from the npm registry, checks that the generated code and the
# descriptor match ../../proto (drift check), builds dist/ (CommonJS with tsc, plus the ES module
# entry point), and runs every test (the bundle test bundles an app with esbuild) with
# node's test runner against a live agent started by tests/conformance/with-agent (which needs
# target/debug/psstd and psst, or $PSST_BIN_DIR).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
cd "$here"

echo "== typescript: install (npm ci)"
npm ci --no-audit --no-fund --loglevel=error

echo "== typescript: drift check"
bash scripts/gen.sh --check

echo "== typescript: build"
npx --no-install tsc -p tsconfig.json
node scripts/esm.js
npx --no-install tsc -p tsconfig.test.json

echo "== typescript: tests (node --test, live agent)"
# The live tests fail, rather than skip, if with-agent does not hand them an agent.
export PSST_REQUIRE_AGENT=1
# As root (CI), beside a fake agent served by a throwaway user: the peer-uid tests need one.
fake=()
if [ "$(id -u)" = 0 ]; then
  fake=("$root/tests/conformance/with-fake-agent")
  export PSST_REQUIRE_FAKE_AGENT=1
fi
# One test file at a time: a watch conformance scenario restarts the shared agent.
exec "${fake[@]}" "$root/tests/conformance/with-agent" node --test --test-concurrency=1 build/test/*.test.js
