#!/usr/bin/env python3
"""Assembles docs/BENCHMARKS.md from one `make bench` run (infra/scripts/bench.sh).

Reads target/lambda/sizes.tsv (package.sh) and the Markdown sections tollgate-bench and
criterion-table.py wrote into --out-dir; prints the document on stdout. The hand-written
analysis (infra/bench-analysis.md) is appended as it is: it explains figures, it does not hold any.
"""
import argparse
import csv
import datetime
import os
import platform
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def command_output(*args):
    try:
        return subprocess.run(args, capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def cpu_model():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def memory_gib():
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemTotal:"):
                    return f"{int(line.split()[1]) / 1048576:.0f} GiB"
    except OSError:
        pass
    return "unknown"


def read(path):
    with open(path) as f:
        return f.read().rstrip() + "\n"


def stripe_functions():
    """The function crates that depend on async-stripe (their manifests name it)."""
    found = []
    functions = os.path.join(ROOT, "functions")
    for name in sorted(os.listdir(functions)):
        manifest = os.path.join(functions, name, "Cargo.toml")
        if os.path.exists(manifest) and "async-stripe" in read(manifest):
            found.append(name)
    return found


BASELINES = ("hello-world", "hello-stripe")


def sizes_section(path, package_seconds):
    with open(path) as f:
        rows = list(csv.DictReader(f, delimiter="\t"))
    by_name = {row["function"]: row for row in rows}
    for baseline in BASELINES:
        if baseline not in by_name:
            sys.exit(f"bench-report: sizes.tsv has no {baseline} row")
    zip_of = {name: int(row["zip_bytes"]) for name, row in by_name.items()}
    stripe = stripe_functions()
    lines = [
        "## Artifact size",
        "",
        "Each function's `bootstrap` for arm64 (`cargo lambda build --release --arm64`, the release "
        "profile: opt-level 3, no cross-crate LTO, symbols stripped, panic = abort) and the zip Lambda "
        "downloads, against two baselines built in the same run with the same profile, features and "
        "target: the hello-world `lambda_http` function (`bench/hello-world`), and for the functions "
        f"that call Stripe ({', '.join(stripe) or 'none'}) a hello world that makes one async-stripe "
        "call (`bench/hello-stripe`): async-stripe's own weight is the floor, what Tollgate adds on top "
        f"is the figure to keep small. Build time of all {len(rows)}: {package_seconds} s. Targets: "
        "a function without Stripe ≤ 2.5× hello world; a Stripe function ≤ 2.5× hello-stripe.",
        "",
        "| Function | bootstrap MB | zip MB | zip × hello world | zip × hello-stripe | Target ≤ 2.5× |",
        "|---|---:|---:|---:|---:|---|",
    ]
    over = []
    order = lambda r: (r["function"] not in BASELINES, r["function"])
    for row in sorted(rows, key=order):
        name = row["function"]
        raw, zipped = int(row["bootstrap_bytes"]), int(row["zip_bytes"])
        versus_hello = zipped / zip_of["hello-world"]
        versus_stripe = zipped / zip_of["hello-stripe"]
        ratio = versus_stripe if name in stripe else versus_hello
        if name in BASELINES:
            verdict = "baseline"
        elif ratio <= 2.5:
            verdict = "met (× hello-stripe)" if name in stripe else "met (× hello world)"
        else:
            verdict = "**not met**"
            over.append(name)
        lines.append(
            f"| {name} | {raw / 1048576:.2f} | {zipped / 1048576:.2f} | {versus_hello:.2f} "
            f"| {versus_stripe:.2f} | {verdict} |"
        )
    lines.append("")
    lines.append(
        f"Hello world: {zip_of['hello-world'] / 1048576:.2f} MB zipped; hello-stripe: "
        f"{zip_of['hello-stripe'] / 1048576:.2f} MB zipped. "
        + (f"Over target: {', '.join(over)} (see the analysis below)." if over else "Every function meets its size target.")
    )
    return "\n".join(lines) + "\n"


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--sizes", required=True)
    parser.add_argument("--out-dir", required=True)
    parser.add_argument("--total-seconds", required=True)
    parser.add_argument("--package-seconds", required=True)
    parser.add_argument("--runs", required=True)
    args = parser.parse_args()

    now = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    parts = [
        "# Benchmarks",
        "",
        f"Written by `make bench` (infra/scripts/bench.sh) on {now}; the whole run took "
        f"{args.total_seconds} s. Figures are from one run on one machine: compare ratios within "
        "this page, not absolute times across runs. Re-run `make bench` to refresh every figure.",
        "",
        "Machine: "
        f"{os.cpu_count()} cores ({cpu_model()}), {memory_gib()} RAM, {platform.system()} "
        f"{platform.release()} {platform.machine()}; {command_output('rustc', '--version')}; "
        f"{command_output(os.path.join(ROOT, '.venv', 'bin', 'cargo-lambda'), 'lambda', '--version')}; "
        "DynamoDB Local from npm "
        "(infra/dynamodb-local) on Java "
        f"{java_version()}.",
        "",
        "Commands (all run by `make bench`):",
        "",
        "```",
        "infra/scripts/package.sh hello-world hello-stripe     # artifact sizes (arm64, release)",
        "cargo build --release -p <every function> -p hello-world -p hello-stripe -p tollgate-tests --bins",
        f"tollgate-bench init --bin-dir target/release --runs {args.runs} --stripe-functions <Stripe functions>",
        "CRITERION_HOME=target/criterion tollgate-hot-paths --bench   # criterion",
        "tollgate-bench throughput --requests 2000 --concurrency 16   # against DynamoDB Local",
        "tollgate-bench cost",
        "```",
        "",
        sizes_section(args.sizes, args.package_seconds),
        "### Where the size goes",
        "",
        "Code by crate in the x86_64 builds of the same profile (symbols kept; "
        "`infra/scripts/crate-sizes.py`): a function without Stripe calls (user-load), the "
        "webhook function, and the two baselines.",
        "",
        "user-load:",
        "",
        read(os.path.join(args.out_dir, "crates-user-load.md")),
        "stripe-webhook:",
        "",
        read(os.path.join(args.out_dir, "crates-stripe-webhook.md")),
        "hello-world:",
        "",
        read(os.path.join(args.out_dir, "crates-hello-world.md")),
        "hello-stripe:",
        "",
        read(os.path.join(args.out_dir, "crates-hello-stripe.md")),
        read(os.path.join(args.out_dir, "init.md")),
        "## Hot paths (criterion)",
        "",
        "`tollgate-hot-paths --bench` (tests/src/bin/tollgate-hot-paths.rs; x86_64, the release profile, built with `tollgate-bench`). "
        "Median of the sampled iterations and the 95 % confidence interval of the mean.",
        "",
        read(os.path.join(args.out_dir, "hot-paths.table.md")),
        read(os.path.join(args.out_dir, "throughput.md")),
        read(os.path.join(args.out_dir, "cost.md")),
        read(os.path.join(args.out_dir, "deletion.md")),
        read(os.path.join(args.out_dir, "notifier.md")),
    ]
    analysis = os.path.join(ROOT, "infra", "bench-analysis.md")
    if os.path.exists(analysis):
        parts.append(read(analysis))
    print("\n".join(parts).rstrip())


def java_version():
    try:
        result = subprocess.run(["java", "-version"], capture_output=True, text=True)
        first = (result.stderr or result.stdout).splitlines()[0]
        return first.replace('"', "")
    except (OSError, IndexError):
        return "unknown"


if __name__ == "__main__":
    main()
