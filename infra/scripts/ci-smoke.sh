#!/usr/bin/env bash
# The smoke test (infra/scripts/smoke.sh) against a fresh local stack: DynamoDB Local, a new table,
# `tollgate-dev serve` on a free port with the Stripe stand-in and a known service key, and a token
# from the local issuer. Everything started here is stopped on exit; the exit status is smoke.sh's.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$root"
started=$SECONDS

name="smoke-$$"
work="$(mktemp -d "${TMPDIR:-/tmp}/tollgate-smoke.XXXXXX")"
server_pid=""
cleanup() {
  local status=$?
  if [[ -n "$server_pid" ]]; then
    kill "$server_pid" 2>/dev/null || true
    wait "$server_pid" 2>/dev/null || true
  fi
  infra/scripts/dynamodb-local.sh stop "$name" || true
  # DynamoDB Local's log is kept only when something failed.
  [[ $status == 0 ]] && rm -f ".tollgate/dynamodb-local-$name.log"
  rm -rf "$work"
  echo "ci-smoke: exit $status after $((SECONDS - started)) s"
  exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# Never real AWS credentials, another table, an external issuer or real Stripe by accident.
unset AWS_PROFILE AWS_ACCESS_KEY_ID AWS_SECRET_ACCESS_KEY AWS_SESSION_TOKEN SECRETS_ARN \
  JWT_ISSUER JWT_JWKS_URL JWT_JWKS JWT_AUDIENCE JWT_AUTHORIZED_PARTIES \
  STRIPE_SECRET_KEY STRIPE_API_BASE STRIPE_WEBHOOK_SECRET TOLLGATE_ADDR TOLLGATE_STRIPE_STANDIN

cargo build --quiet -p tollgate-dev
dev="$root/target/debug/tollgate-dev"

DYNAMODB_ENDPOINT="$(infra/scripts/dynamodb-local.sh start "$name")"
export DYNAMODB_ENDPOINT
export TABLE_NAME="smoke-$(date +%s)-$$"
export TOLLGATE_DEV_KEY="$work/dev-issuer-key.p8"
export TOLLGATE_DEV_WEBHOOK_SECRET_FILE="$work/dev-stripe-webhook-secret"
# A new service key (tgsk_ and 256 random bits) and its hash.
key_lines="$("$dev" service-key)"
SERVICE_KEY="$(sed -n 's/^SERVICE_KEY=//p' <<<"$key_lines")"
SERVICE_KEY_HASHES="$(sed -n 's/^SERVICE_KEY_HASHES=//p' <<<"$key_lines")"
export SERVICE_KEY_HASHES
export RUST_LOG="${RUST_LOG:-warn}"
"$dev" create-table >/dev/null

# Minted before the gateway starts, so the local issuer's key exists before `serve` reads it.
TOKEN="$("$dev" token --sub "smoke|$$-$(date +%s)" --email smoke@example.com --name "Smoke Test")"

port="$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()')"
base="http://127.0.0.1:$port"
"$dev" serve --addr "127.0.0.1:$port" --stripe-standin 127.0.0.1:0 >"$work/gateway.log" 2>&1 &
server_pid=$!
for _ in $(seq 1 100); do
  (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break
  kill -0 "$server_pid" 2>/dev/null || { cat "$work/gateway.log" >&2; echo "ci-smoke: the gateway exited" >&2; exit 1; }
  sleep 0.1
done
(exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null \
  || { cat "$work/gateway.log" >&2; echo "ci-smoke: the gateway is not listening" >&2; exit 1; }
echo "ci-smoke: dev gateway at $base (DynamoDB Local $DYNAMODB_ENDPOINT, table $TABLE_NAME)"

status=0
TOKEN="$TOKEN" SERVICE_KEY="$SERVICE_KEY" infra/scripts/smoke.sh "$base" || status=$?
if [[ $status != 0 ]]; then
  echo "ci-smoke: gateway log:" >&2
  cat "$work/gateway.log" >&2
fi
exit "$status"
