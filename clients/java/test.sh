#!/usr/bin/env bash
# CI entry point for the Java client. From a fresh clone, with Java 17+ and Maven 3.8+:
#   clients/java/test.sh
# resolves the dependencies and plugins from Maven Central (protoc and protoc-gen-grpc-java come
# as Maven artifacts), generates the stubs from ../../proto during the build (no copy, so nothing
# to drift), compiles, and runs the JUnit 5 tests with Surefire against a live agent started by
# tests/conformance/with-agent (which needs target/debug/psstd and psst, or $PSST_BIN_DIR).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
cd "$here"
mvn=(mvn -B -ntp -Dstyle.color=never)

echo "== java: resolve and build (stubs generated from ../../proto)"
"${mvn[@]}" -q test-compile

echo "== java: tests (JUnit 5 via Surefire, live agent)"
# The live tests fail, rather than skip, if with-agent does not hand them an agent.
export PSST_REQUIRE_AGENT=1
exec "$root/tests/conformance/with-agent" "${mvn[@]}" surefire:test
