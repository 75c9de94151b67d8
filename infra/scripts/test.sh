#!/usr/bin/env bash
# `make test`: starts DynamoDB Local on a free 127.0.0.1 port, runs the whole suite against it, stops it.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$root"
# The project venv: moto's server for the Secrets Manager tests.
infra/scripts/venv.sh >/dev/null
name="test-$$"
trap 'infra/scripts/dynamodb-local.sh stop "$name"' EXIT
DYNAMODB_ENDPOINT="$(infra/scripts/dynamodb-local.sh start "$name")"
export DYNAMODB_ENDPOINT
echo "DynamoDB Local for tests at $DYNAMODB_ENDPOINT"
# Tests never use real AWS credentials or another table by accident.
unset AWS_PROFILE AWS_ACCESS_KEY_ID AWS_SECRET_ACCESS_KEY AWS_SESSION_TOKEN TABLE_NAME JWT_ISSUER
# tests/tests/lambda_runtime.rs boots every function's real binary under a local Runtime API.
cargo build --quiet --workspace --bins
if cargo nextest --version >/dev/null 2>&1; then
  cargo nextest run --workspace --no-fail-fast "$@"
else
  echo "cargo-nextest not found: using cargo test" >&2
  cargo test --workspace --no-fail-fast "$@"
fi
