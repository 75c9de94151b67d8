#!/usr/bin/env bash
# `make dev`: DynamoDB Local (data kept in .tollgate/dynamodb), the table, a token, and the API on
# TOLLGATE_ADDR (default 127.0.0.1:3000) through the dev gateway. Ctrl-C stops everything.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$root"
[[ -f .env ]] && { set -a; . ./.env; set +a; }

export TOLLGATE_ADDR="${TOLLGATE_ADDR:-127.0.0.1:3000}"
export TABLE_NAME="${TABLE_NAME:-tollgate}"
trap 'infra/scripts/dynamodb-local.sh stop dev' EXIT INT TERM
if [[ -z "${DYNAMODB_ENDPOINT:-}" ]]; then
  DYNAMODB_ENDPOINT="$(infra/scripts/dynamodb-local.sh start dev "${DYNAMODB_PORT:-8000}" "$root/.tollgate/dynamodb")"
  export DYNAMODB_ENDPOINT
fi
echo "DynamoDB Local: $DYNAMODB_ENDPOINT"

# A local service key for the call-handling service's usage posts (never use it anywhere else).
if [[ -z "${SERVICE_KEY_HASHES:-}" ]]; then
  DEV_SERVICE_KEY="tgsk_dev_local_only"
  SERVICE_KEY_HASHES="$(printf %s "$DEV_SERVICE_KEY" | sha256sum | cut -d' ' -f1)"
  export SERVICE_KEY_HASHES
fi

cargo build --quiet -p tollgate-dev
dev=target/debug/tollgate-dev
"$dev" create-table

if [[ -z "${JWT_ISSUER:-}" ]]; then
  token="$("$dev" token --sub "dev|alice" --email alice@example.com --name "Alice Dev")"
  cat <<MSG

Ready-to-use token (local issuer, 12 h) for user dev|alice:

  export TOKEN='$token'

Try:
  curl -s http://$TOLLGATE_ADDR/api/me -H "Authorization: Bearer \$TOKEN"
  curl -s -X POST http://$TOLLGATE_ADDR/api/permissions/check -H "Authorization: Bearer \$TOKEN" \\
       -H 'content-type: application/json' -d '{"permissions":["users:read","calls:read:own"],"features":["apiAccess"]}'
More tokens: $dev token --sub SUB --email EMAIL [--name NAME]
MSG
  if [[ -n "${DEV_SERVICE_KEY:-}" ]]; then cat <<MSG
Usage from the call-handling service (service key $DEV_SERVICE_KEY, local only):
  curl -s -X POST http://$TOLLGATE_ADDR/api/usage/calls -H "Authorization: Bearer $DEV_SERVICE_KEY" \\
       -H 'content-type: application/json' \\
       -d '{"organizationId":"org_...","callId":"call-1","durationSeconds":125,"endedAt":"'"\$(date -u +%Y-%m-%dT%H:%M:%SZ)"'"}'
MSG
  fi
fi
exec "$dev" serve
