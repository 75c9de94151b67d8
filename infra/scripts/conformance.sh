#!/usr/bin/env bash
# Contract fuzzing: schemathesis against the dev gateway, with a token of each role and an
# organization API key of the least and the most privileged role.
#
#   infra/scripts/conformance.sh [SCHEMATHESIS_RUN_OPTIONS...]
#
# Extra options go to every user-token run (e.g. `--include-operation-id getOrganization`); with
# any, the service-key run is skipped.
#
# Starts DynamoDB Local (in memory), the test suite's Stripe stand-in and `tollgate-dev serve` on
# free 127.0.0.1 ports over a fresh table, creates one organization (plan BUSINESS) with a member
# of every role plus a user without an organization and two organization API keys (VIEWER and
# OWNER), then runs `schemathesis run docs/openapi.yaml` once per token, once per API key and once
# with a service key (POST /api/usage/calls only).
# Checks: no 5xx, status codes, content types and response bodies as documented. Exits non-zero
# on any failure. Everything it started is stopped on exit. Reports (schemathesis output, ndjson,
# JUnit) and the gateway's log are kept in .tollgate/conformance/.
#
# Tunables (environment): CONFORMANCE_MAX_EXAMPLES (default 30), CONFORMANCE_SEED (default 7),
# CONFORMANCE_WORKERS (default 1), CONFORMANCE_SCHEMA (default docs/openapi.yaml),
# CONFORMANCE_PHASES (default examples,coverage,fuzzing,stateful).
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$root"
started_at=$(date +%s)

max_examples="${CONFORMANCE_MAX_EXAMPLES:-30}"
seed="${CONFORMANCE_SEED:-7}"
# One worker: Hypothesis' lambda-source cache races under several threads on CPython 3.11
# ("AST constructor recursion depth mismatch" runtime errors).
workers="${CONFORMANCE_WORKERS:-1}"
phases="${CONFORMANCE_PHASES:-examples,coverage,fuzzing,stateful}"
schema="${CONFORMANCE_SCHEMA:-docs/openapi.yaml}"
extra=("$@")
# A filtered run may exclude the operations links connect; the stateful phase then reports an error.
if [[ ${#extra[@]} != 0 && -z "${CONFORMANCE_PHASES:-}" ]]; then phases="examples,coverage,fuzzing"; fi
checks="not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance"

# --- schemathesis in the project venv ------------------------------------------------------------
venv="$(infra/scripts/venv.sh conformance)"
schemathesis="$venv/bin/schemathesis"

# --- local stack ----------------------------------------------------------------------------------
cargo build --quiet -p tollgate-dev
cargo build --quiet -p tollgate-tests --example stripe_standin
target_dir="${CARGO_TARGET_DIR:-$root/target}"
dev="$target_dir/debug/tollgate-dev"
reports="$root/.tollgate/conformance"
rm -rf "$reports"; mkdir -p "$reports"
work="$(mktemp -d "${TMPDIR:-/tmp}/tollgate-conformance.XXXXXX")"
server_pid=""
stripe_pid=""
cleanup() {
  local status=$? pid
  for pid in $server_pid $stripe_pid; do
    kill "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
  done
  infra/scripts/dynamodb-local.sh stop conformance || true
  rm -rf "$work"
  exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# Never real AWS credentials, another table or an external issuer by accident.
unset AWS_PROFILE AWS_ACCESS_KEY_ID AWS_SECRET_ACCESS_KEY AWS_SESSION_TOKEN \
  JWT_ISSUER JWT_JWKS_URL JWT_JWKS JWT_AUDIENCE JWT_AUTHORIZED_PARTIES \
  STRIPE_SECRET_KEY STRIPE_API_BASE SECRETS_ARN TOLLGATE_ADDR

DYNAMODB_ENDPOINT="$(infra/scripts/dynamodb-local.sh start conformance)"
export DYNAMODB_ENDPOINT
export TABLE_NAME="conformance-$(date +%s)-$$"
export TOLLGATE_DEV_KEY="$work/dev-issuer-key.p8"
export STRIPE_WEBHOOK_SECRET="whsec_conformance"
# A new service key (tgsk_ and 256 random bits) and its hash.
key_lines="$("$dev" service-key)"
service_key="$(sed -n 's/^SERVICE_KEY=//p' <<<"$key_lines")"
SERVICE_KEY_HASHES="$(sed -n 's/^SERVICE_KEY_HASHES=//p' <<<"$key_lines")"
export SERVICE_KEY_HASHES
ENCRYPTION_KEYS="conformance:$(od -An -N32 -tx1 /dev/urandom | tr -d ' \n')"
export ENCRYPTION_KEYS ENCRYPTION_ACTIVE_KEY="conformance"
API_KEY_PEPPER="$(od -An -N32 -tx1 /dev/urandom | tr -d ' \n')"
export API_KEY_PEPPER
# Rate limits off: the fuzzer sends far more requests per user than a person would.
export RATE_LIMIT_USER_PER_HOUR=0 RATE_LIMIT_ANONYMOUS_PER_HOUR=0 \
  RATE_LIMIT_SENSITIVE_PER_15_MINUTES=0 RATE_LIMIT_FAILED_AUTH_PER_15_MINUTES=0 \
  RATE_LIMIT_API_KEY_PER_HOUR=0
export RUST_LOG="${RUST_LOG:-warn}"

echo "conformance: DynamoDB Local at $DYNAMODB_ENDPOINT, table $TABLE_NAME"
"$dev" create-table

# Stripe: the test suite's local stand-in, so checkout and portal run instead of answering 503.
"$target_dir/debug/examples/stripe_standin" >"$work/stripe.log" 2>&1 &
stripe_pid=$!
STRIPE_API_BASE=""
for _ in $(seq 1 100); do
  STRIPE_API_BASE="$(sed -n 's/^Stripe stand-in listening on //p' "$work/stripe.log")"
  [[ -n "$STRIPE_API_BASE" ]] && break
  kill -0 "$stripe_pid" 2>/dev/null || break
  sleep 0.1
done
[[ -n "$STRIPE_API_BASE" ]] || { cat "$work/stripe.log" >&2; echo "conformance: the Stripe stand-in did not start" >&2; exit 1; }
export STRIPE_API_BASE STRIPE_SECRET_KEY="sk_test_conformance"
echo "conformance: Stripe stand-in at $STRIPE_API_BASE"

token() { "$dev" token --sub "conformance|$1" --email "$1@conformance.test" --name "Conformance $1"; }
# Minted before the gateway starts, so the local issuer's key exists before `serve` reads it.
declare -A tokens
for who in owner admin manager operator viewer newcomer; do tokens[$who]="$(token "$who")"; done

port="$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()')"
base="http://127.0.0.1:$port"
"$dev" serve --addr "127.0.0.1:$port" >"$reports/gateway.log" 2>&1 &
server_pid=$!
for _ in $(seq 1 100); do
  curl -sf -o /dev/null "$base/.well-known/jwks.json" && break
  kill -0 "$server_pid" 2>/dev/null || { cat "$reports/gateway.log" >&2; echo "conformance: the gateway exited" >&2; exit 1; }
  sleep 0.1
done
curl -sf -o /dev/null "$base/.well-known/jwks.json" || { cat "$reports/gateway.log" >&2; echo "conformance: the gateway is not listening" >&2; exit 1; }
echo "conformance: dev gateway at $base"

# --- fixtures: one organization with every role, and a user without one --------------------------
# call METHOD PATH TOKEN [BODY] EXPECTED_STATUS -> prints the body
call() {
  local method=$1 path=$2 bearer=$3 body=$4 expected=$5 out status
  out="$work/reply.json"
  status=$(curl -s -o "$out" -w '%{http_code}' -X "$method" "$base$path" \
    -H "Authorization: Bearer $bearer" -H 'content-type: application/json' ${body:+-d "$body"})
  if [[ "$status" != "$expected" ]]; then
    echo "conformance: fixture $method $path answered $status, expected $expected: $(cat "$out")" >&2
    exit 1
  fi
  cat "$out"
}
field() {
  python3 -c 'import json, sys
v = json.load(sys.stdin)
for key in sys.argv[1:]:
    v = v[key]
print("" if v is None else v)' "$@"
}

call GET /api/me "${tokens[owner]}" "" 201 >/dev/null
org_id="$(call POST /api/organizations "${tokens[owner]}" '{"name":"Conformance Org"}' 201 | field id)"
"$dev" set-plan --organization "$org_id" --plan BUSINESS
for role in ADMIN MANAGER OPERATOR VIEWER; do
  who="${role,,}"
  invitation="$(call POST /api/users "${tokens[owner]}" "{\"email\":\"$who@conformance.test\",\"role\":\"$role\"}" 201 | field id)"
  call GET /api/me "${tokens[$who]}" "" 201 >/dev/null
  joined="$(call POST "/api/me/invitations/$invitation/accept" "${tokens[$who]}" "" 200 | field user role)"
  [[ "$joined" == "$role" ]] || { echo "conformance: $who joined as '$joined', expected $role" >&2; exit 1; }
done
call GET /api/me "${tokens[newcomer]}" "" 201 >/dev/null
# Organization API keys act as the organization with their role: the least and the most privileged.
for role in VIEWER OWNER; do
  tokens[key-${role,,}]="$(call POST /api/api-keys "${tokens[owner]}" "{\"name\":\"Conformance $role key\",\"role\":\"$role\"}" 201 | field key)"
done
echo "conformance: organization $org_id (BUSINESS) with OWNER, ADMIN, MANAGER, OPERATOR, VIEWER and a VIEWER and an OWNER API key; one user without an organization"

# --- schemathesis, once per credential ------------------------------------------------------------
declare -A outcome
failed=0
run() {
  local name=$1 run_phases=$2 bearer=$3; shift 3
  local cmd=("$schemathesis" run "$schema" --url "$base"
    --header "Authorization: Bearer $bearer"
    --checks "$checks" --phases "$run_phases" --max-examples "$max_examples" --seed "$seed"
    --workers "$workers" --generation-database none --no-color
    --report ndjson,junit --report-dir "$reports/$name" "$@")
  echo
  echo "=== schemathesis as $name: ${cmd[*]//Bearer */Bearer <$name token>}"
  local t0=$SECONDS status=0 out="$reports/$name/output.txt" tested cases
  mkdir -p "$reports/$name"
  set +e
  "${cmd[@]}" 2>&1 | tee "$out"
  status=${PIPESTATUS[0]}
  set -e
  tested="$(sed -n 's/^ *Tested: *//p' "$out" | head -n 1)"
  cases="$(grep -E '^ +[0-9]+ generated' "$out" | head -n 1 | sed 's/^ *//')"
  outcome[$name]="exit $status, $((SECONDS - t0)) s, ${tested:-?} operations tested, ${cases:-no test cases}"
  [[ $status == 0 ]] || failed=1
}
# Least privilege first: an ADMIN's or OWNER's run may demote or remove the members linked from
# GET /api/users, which must not happen before those members' own runs; the OWNER's run may
# revoke the keys it creates, never the two above (no link leads there).
order=(viewer operator manager admin key-viewer key-owner owner newcomer)
for who in "${order[@]}"; do
  run "$who" "$phases" "${tokens[$who]}" "${extra[@]}"
done
# One operation, so no links to follow: no stateful phase.
if [[ ${#extra[@]} == 0 ]]; then
  run service-key "${phases//,stateful/}" "$service_key" --include-operation-id recordCall
fi

echo
echo "=== conformance summary ($(( $(date +%s) - started_at )) s; reports in ${reports#"$root"/})"
for name in "${order[@]}" service-key; do
  [[ -n "${outcome[$name]:-}" ]] && printf '  %-12s %s\n' "$name" "${outcome[$name]}"
done
echo "  command (per credential; service key: + --include-operation-id recordCall, no stateful phase):"
echo "    schemathesis run $schema --url $base --header 'Authorization: Bearer <token>' --checks $checks \\"
echo "      --phases $phases --max-examples $max_examples --seed $seed --workers $workers --generation-database none"
if [[ $failed != 0 ]]; then
  echo "conformance: FAILED (see the schemathesis output above)" >&2
  exit 1
fi
echo "conformance: passed"
