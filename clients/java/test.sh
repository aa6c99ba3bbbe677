#!/usr/bin/env bash
# CI entry point for the Java client. From a fresh clone, with Java 17+ and Maven 3.8+:
#   clients/java/test.sh
# resolves the dependencies and plugins from Maven Central (protoc and protoc-gen-grpc-java come
# as Maven artifacts), generates the stubs from ../../proto during the build (no copy, so nothing
# to drift), compiles, and runs the JUnit 5 tests with Surefire against a live agent started by
# tests/conformance/with-agent (which needs target/debug/psstd and psst, or $PSST_BIN_DIR); then
# installs the client into the local Maven repository and runs the Spring Boot module's tests
# (spring-boot/, a minimal Spring Boot app) against an agent of their own.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
cd "$here"
mvn=(mvn -B -ntp -Dstyle.color=never)

echo "== java: resolve and build (stubs generated from ../../proto)"
"${mvn[@]}" -q test-compile
# The Spring Boot module builds against this client from the local repository.
"${mvn[@]}" -q install -DskipTests
(cd spring-boot && "${mvn[@]}" -q test-compile)

# The live tests fail, rather than skip, if with-agent does not hand them an agent.
export PSST_REQUIRE_AGENT=1
echo "== java: tests (JUnit 5 via Surefire, live agent)"
# As root (CI), beside a fake agent served by a throwaway user: the peer-uid tests need one.
fake=()
if [ "$(id -u)" = 0 ]; then
  fake=("$root/tests/conformance/with-fake-agent")
  export PSST_REQUIRE_FAKE_AGENT=1
fi
"${fake[@]}" "$root/tests/conformance/with-agent" "${mvn[@]}" surefire:test
# An agent of its own: the Spring test rotates the secret the Source scenario starts from.
echo "== java: Spring Boot module (a minimal app, live agent)"
cd spring-boot
exec "$root/tests/conformance/with-agent" "${mvn[@]}" surefire:test
