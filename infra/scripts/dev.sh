#!/usr/bin/env bash
# `make dev`: DynamoDB Local (data kept in .tollgate/dynamodb), the table, a token, and the API on
# TOLLGATE_ADDR (default 127.0.0.1:3000) through the dev gateway. Ctrl-C stops everything.
#
# Billing: without STRIPE_SECRET_KEY the gateway runs the local Stripe stand-in on
# STRIPE_STANDIN_ADDR (default 127.0.0.1:12111), with a price for every plan and a local webhook
# secret (.tollgate/dev-stripe-webhook-secret); `tollgate-dev stripe pay <sessionId>` pays a
# checkout. With STRIPE_SECRET_KEY (a test-mode key) it talks to Stripe itself.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$root"
[[ -f .env ]] && { set -a; . ./.env; set +a; }

export TOLLGATE_ADDR="${TOLLGATE_ADDR:-127.0.0.1:3000}"
export TABLE_NAME="${TABLE_NAME:-tollgate}"
# What this script started, stopped when it exits.
stop_dynamodb=false
moto_pid=""
stop_started() {
  if [[ -n "$moto_pid" ]]; then kill "$moto_pid" 2>/dev/null || true; fi
  if $stop_dynamodb; then infra/scripts/dynamodb-local.sh stop dev; fi
}
trap stop_started EXIT INT TERM

if [[ -z "${DYNAMODB_ENDPOINT:-}" ]]; then
  stop_dynamodb=true
  DYNAMODB_ENDPOINT="$(infra/scripts/dynamodb-local.sh start dev "${DYNAMODB_PORT:-8000}" "$root/.tollgate/dynamodb")"
  export DYNAMODB_ENDPOINT
fi
echo "DynamoDB Local: $DYNAMODB_ENDPOINT"

cargo build --quiet -p tollgate-dev
dev=target/debug/tollgate-dev

# A local service key for the call-handling service's usage posts, made once on this machine and
# kept in .tollgate/dev-service-key (mode 0600; never use it anywhere else).
if [[ -z "${SERVICE_KEY_HASHES:-}" ]]; then
  key_lines="$("$dev" service-key --file .tollgate/dev-service-key)"
  DEV_SERVICE_KEY="$(sed -n 's/^SERVICE_KEY=//p' <<<"$key_lines")"
  SERVICE_KEY_HASHES="$(sed -n 's/^SERVICE_KEY_HASHES=//p' <<<"$key_lines")"
  export SERVICE_KEY_HASHES
fi

# A local pepper for organization API keys (their HMAC key), made once on this machine and kept in
# .tollgate/dev-api-key-pepper (mode 0600; never use it anywhere else).
if [[ -z "${API_KEY_PEPPER:-}" ]]; then
  pepper_file=.tollgate/dev-api-key-pepper
  if [[ ! -s "$pepper_file" ]]; then
    (umask 077; od -An -N32 -tx1 /dev/urandom | tr -d ' \n' >"$pepper_file")
  fi
  API_KEY_PEPPER="$(cat "$pepper_file")"
  export API_KEY_PEPPER
fi

# A local key ring for integration credentials and webhook signing secrets, made once on this
# machine and kept in .tollgate/dev-encryption-key (mode 0600; never use it anywhere else).
if [[ -z "${ENCRYPTION_KEYS:-}" ]]; then
  ring_file=.tollgate/dev-encryption-key
  if [[ ! -s "$ring_file" ]]; then
    (umask 077; od -An -N32 -tx1 /dev/urandom | tr -d ' \n' >"$ring_file")
  fi
  ENCRYPTION_KEYS="dev:$(cat "$ring_file")"
  ENCRYPTION_ACTIVE_KEY=dev
  export ENCRYPTION_KEYS ENCRYPTION_ACTIVE_KEY
fi

serve_args=()
if [[ -z "${STRIPE_SECRET_KEY:-}" ]]; then
  standin="${STRIPE_STANDIN_ADDR:-127.0.0.1:12111}"
  serve_args=(--stripe-standin "$standin")
  # The stand-in's own key, URL and the local secret `stripe pay` signs with replace these.
  unset STRIPE_API_BASE STRIPE_WEBHOOK_SECRET
fi

"$dev" create-table

# Outbound webhooks: moto's SQS (from the project venv) holds the delivery queue and its
# dead-letter queue, which `tollgate-dev serve` creates; the notifier runs inside the gateway.
if [[ -z "${SQS_ENDPOINT:-}" && -z "${WEBHOOK_QUEUE_URL:-}" ]]; then
  venv="$(infra/scripts/venv.sh)"
  sqs_port="${SQS_PORT:-9324}"
  mkdir -p .tollgate
  "$venv/bin/moto_server" --host 127.0.0.1 --port "$sqs_port" >.tollgate/moto-sqs.log 2>&1 &
  moto_pid=$!
  export SQS_ENDPOINT="http://127.0.0.1:$sqs_port"
  for _ in $(seq 1 120); do
    curl -s -o /dev/null "$SQS_ENDPOINT" && break
    kill -0 "$moto_pid" 2>/dev/null || { echo "moto's SQS did not start; see .tollgate/moto-sqs.log" >&2; exit 1; }
    sleep 0.5
  done
  echo "moto's SQS: $SQS_ENDPOINT"
fi

B="http://$TOLLGATE_ADDR"
if [[ -z "${JWT_ISSUER:-}" ]]; then
  token="$("$dev" token --sub "dev|alice" --email alice@example.com --name "Alice Dev")"
  cat <<MSG

Ready-to-use token (local issuer, 12 h) for user dev|alice:

  export TOKEN='$token'
More tokens: $dev token --sub SUB --email EMAIL [--name NAME]
MSG
else
  echo; echo "Put a token from $JWT_ISSUER in \$TOKEN."
fi
service_key="${DEV_SERVICE_KEY:-\$SERVICE_KEY}"
if [[ -n "${DEV_SERVICE_KEY:-}" ]]; then
  cat <<MSG

Local service key (kept in .tollgate/dev-service-key) for POST /api/usage/calls:

  SERVICE_KEY=$DEV_SERVICE_KEY
  SERVICE_KEY_HASHES=$SERVICE_KEY_HASHES   # for sam local: put it in your copy of env.example.json
MSG
fi
if [[ -n "${serve_args[*]}" ]]; then
  pay_line="  $dev stripe pay --gateway \$B --stripe-api-base http://$standin \"\$SESSION\""
else
  pay_line="  # Stripe test mode: open the checkout url, pay with card 4242 4242 4242 4242; \`stripe listen\`
  # forwards the events to $B/api/webhooks/stripe (its secret in STRIPE_WEBHOOK_SECRET)."
fi
cat <<MSG

The whole walk (each user onboards once; data is kept in .tollgate/dynamodb, so for another walk
use another user: export TOKEN=\$($dev token --sub "dev|\$RANDOM")):

  B=$B; H="Authorization: Bearer \$TOKEN"; J='content-type: application/json'
  pick() { python3 -c 'import json,sys; d=json.load(sys.stdin); print(json.dumps(d), file=sys.stderr); print(d.get(sys.argv[1], ""))' "\$1"; }
  # who am I (the first call creates the user)
  curl -s -w '\\n' \$B/api/me -H "\$H"
  # 1. onboard: a new organization, you its OWNER
  ORG=\$(curl -s -X POST \$B/api/organizations -H "\$H" -H "\$J" -d '{"name":"Acme Dev"}' | pick id)
  # 2. checkout: a BUSINESS subscription, monthly
  SESSION=\$(curl -s -X POST \$B/api/billing/checkout -H "\$H" -H "\$J" -d '{"plan":"BUSINESS","interval":"monthly"}' | pick sessionId)
  # 3. pay it as the customer would
$pay_line
  # 4. the plan applies: subscription, entitlements
  curl -s -w '\\n' \$B/api/billing/subscription -H "\$H"
  curl -s -w '\\n' -X POST \$B/api/permissions/check -H "\$H" -H "\$J" -d '{"permissions":["users:read","calls:read:own"],"features":["apiAccess"]}'
  # 5. usage from the call-handling service (service key $service_key, local only)
  curl -s -w '\\n' -X POST \$B/api/usage/calls -H "Authorization: Bearer $service_key" -H "\$J" \\
       -d '{"organizationId":"'"\$ORG"'","callId":"call-1","durationSeconds":125,"endedAt":"'"\$(date -u +%Y-%m-%dT%H:%M:%SZ)"'"}'
  # 6. usage against the plan's allowance
  curl -s -w '\\n' \$B/api/billing/usage -H "\$H"
  # 7. an organization API key (BUSINESS has apiAccess): shown once, then used as the organization
  KEY=\$(curl -s -X POST \$B/api/api-keys -H "\$H" -H "\$J" -d '{"name":"Dev key","role":"VIEWER"}' | pick key)
  curl -s -w '\\n' \$B/api/organization -H "Authorization: Bearer \$KEY"
  # 8. outbound webhooks: an endpoint on this machine (its whsec_ secret is shown once); each audit
  #    event of the organization is then POSTed there, signed (README, "Outbound webhooks")
  curl -s -w '\\n' -X POST \$B/api/webhooks/endpoints -H "\$H" -H "\$J" \\
       -d '{"url":"http://127.0.0.1:9000/hooks","eventTypes":["organization.updated","member.invited"]}'

MSG
# Not exec: the trap stops the DynamoDB Local and moto started here when the gateway stops.
"$dev" serve "${serve_args[@]}"
