#!/usr/bin/env bash
# The test suite: installs what it needs (scripts/test-setup.sh), then `cargo test` with any
# arguments given. The PostgreSQL and MySQL variants of the tests run when
# ETCDSHIM_TEST_POSTGRES and ETCDSHIM_TEST_MYSQL name a server (README, "Quick start"); with
# CI=true every missing tool or database fails the run instead of skipping.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/test-setup.sh
export ETCDSHIM_TEST_ETCD35="${ETCDSHIM_TEST_ETCD35:-/tmp/etcd35/root/usr/bin}"
cargo test "$@"
