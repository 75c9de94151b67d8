#!/usr/bin/env bash
# `make bench`: every benchmark of docs/BENCHMARKS.md in one run on this machine, then rewrites
# docs/BENCHMARKS.md with the figures, the commands and the machine.
#
#   1. artifact size: `make package` (arm64, release profile) + the two baselines (hello-world,
#      hello-stripe: one async-stripe call), zipped
#   2. init: x86_64 builds (release profile) of every function and hello world, 20 starts each under
#      the local Runtime API (tollgate-bench init)
#   3. hot paths: criterion (tollgate-hot-paths --bench, built with tollgate-bench)
#   4. throughput: dev gateway vs direct DynamoDB at 16 connections (tollgate-bench throughput)
#   5. DynamoDB cost per route (tollgate-bench cost), organization deletion (tollgate-bench deletion),
#      the webhook notifier's throughput (tollgate-bench notifier)
#
# Tunables: BENCH_RUNS (20), BENCH_REQUESTS (2000), BENCH_CONCURRENCY (16).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$root"
started_at=$(date +%s)
runs="${BENCH_RUNS:-20}"
requests="${BENCH_REQUESTS:-2000}"
concurrency="${BENCH_CONCURRENCY:-16}"
out="target/bench"
rm -rf "$out"; mkdir -p "$out"
phase() { echo; echo "=== bench: $* ($(( $(date +%s) - started_at )) s)"; }

functions=()
for manifest in functions/*/Cargo.toml; do functions+=("$(basename "$(dirname "$manifest")")"); done
packages=(); for f in "${functions[@]}" hello-world hello-stripe; do packages+=(-p "$f"); done
# The functions that call Stripe (their crate depends on async-stripe), compared with hello-stripe.
stripe_functions=$( (grep -l '^async-stripe' functions/*/Cargo.toml || true) | xargs -rn1 dirname | xargs -rn1 basename | paste -sd, -)

phase "1/5 artifact size: make package + hello-world + hello-stripe (arm64, release)"
t0=$(date +%s)
infra/scripts/package.sh hello-world hello-stripe
package_seconds=$(( $(date +%s) - t0 ))

phase "2/5 x86_64 builds for init and the measuring tool (release profile)"
# Symbols kept (only here, not in the arm64 artifacts) so crate-sizes.py can say where size goes.
export CARGO_PROFILE_RELEASE_STRIP=none
# One invocation for the functions, the hello world and the measuring tools: built separately,
# the tools' dependencies (axum turns on hyper's server side) would give hyper, and everything
# above it up to the AWS SDK and tollgate, a second feature set and a second release build.
cargo build --release "${packages[@]}" -p tollgate-tests --bins
bench_tool="target/release/tollgate-bench"
bins="target/release"

for binary in user-load stripe-webhook hello-world hello-stripe; do
  python3 infra/scripts/crate-sizes.py "$bins/$binary" 10 >"$out/crates-$binary.md"
done

phase "3/5 init: $runs starts per binary"
"$bench_tool" init --bin-dir "$bins" --runs "$runs" --stripe-functions "$stripe_functions" --out "$out/init.md"

phase "4/5 hot paths: criterion"
rm -rf target/criterion
CRITERION_HOME=target/criterion target/release/tollgate-hot-paths --bench 2>&1 | grep -E '^[a-z_0-9]+/|time:' || true
python3 infra/scripts/criterion-table.py target/criterion >"$out/hot-paths.table.md"

phase "5/5 throughput and DynamoDB cost per route (DynamoDB Local)"
trap 'infra/scripts/dynamodb-local.sh stop bench' EXIT
DYNAMODB_ENDPOINT="$(infra/scripts/dynamodb-local.sh start bench)"
export DYNAMODB_ENDPOINT
unset AWS_PROFILE AWS_ACCESS_KEY_ID AWS_SECRET_ACCESS_KEY AWS_SESSION_TOKEN TABLE_NAME JWT_ISSUER
export RUST_LOG=warn
"$bench_tool" throughput --requests "$requests" --concurrency "$concurrency" --out "$out/throughput.md"
"$bench_tool" cost --out "$out/cost.md"
"$bench_tool" deletion --out "$out/deletion.md"
# moto's SQS (the notifier's delivery queue) comes from the project venv.
infra/scripts/venv.sh >/dev/null
"$bench_tool" notifier --out "$out/notifier.md"

total=$(( $(date +%s) - started_at ))
phase "writing docs/BENCHMARKS.md"
python3 infra/scripts/bench-report.py \
  --sizes target/lambda/sizes.tsv --out-dir "$out" --total-seconds "$total" \
  --package-seconds "$package_seconds" --runs "$runs" >docs/BENCHMARKS.md
echo "bench: done in ${total} s; docs/BENCHMARKS.md rewritten"
