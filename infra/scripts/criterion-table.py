#!/usr/bin/env python3
"""Prints criterion results as a Markdown table (for docs/BENCHMARKS.md).

Usage: criterion-table.py [CRITERION_DIR]   (default: target/criterion)

Reads every <CRITERION_DIR>/**/new/estimates.json (the latest run of each benchmark) and the
benchmark.json beside it for the benchmark's full id, and prints

    | Benchmark | Median | 95% CI of the mean |

sorted by benchmark id, times in ns / µs / ms / s. Exits 1 when no result is found or a result
file cannot be read. Standard library only.
"""

import json
import sys
from pathlib import Path

UNITS = [(1e9, "s"), (1e6, "ms"), (1e3, "µs"), (1.0, "ns")]


def unit_for(nanoseconds):
    """The largest unit in which the value is at least 1 (ns for anything smaller)."""
    for scale, name in UNITS:
        if abs(nanoseconds) >= scale:
            return scale, name
    return UNITS[-1]


def number(value):
    """Three significant digits, without scientific notation for the ranges used here."""
    if value >= 100:
        return f"{value:.0f}"
    if value >= 10:
        return f"{value:.1f}"
    return f"{value:.2f}"


def duration(nanoseconds):
    scale, name = unit_for(nanoseconds)
    return f"{number(nanoseconds / scale)} {name}"


def interval(lower, upper, reference):
    """Both bounds in the unit of `reference` (the point estimate), so they read side by side."""
    scale, name = unit_for(reference)
    return f"{number(lower / scale)} – {number(upper / scale)} {name}"


def load(path):
    try:
        with path.open(encoding="utf-8") as handle:
            return json.load(handle)
    except (OSError, ValueError) as error:
        sys.exit(f"criterion-table: cannot read {path}: {error}")


def benchmark_id(new_dir, root):
    """The id criterion gave the benchmark (`group/function[/value]`), else its directory."""
    meta_path = new_dir / "benchmark.json"
    if meta_path.is_file():
        meta = load(meta_path)
        full_id = meta.get("full_id") or meta.get("title")
        if full_id:
            return str(full_id)
    return new_dir.parent.relative_to(root).as_posix()


def rows(root):
    found = []
    for estimates_path in sorted(root.glob("**/new/estimates.json")):
        new_dir = estimates_path.parent
        estimates = load(estimates_path)
        try:
            median = float(estimates["median"]["point_estimate"])
            mean = estimates["mean"]
            mean_point = float(mean["point_estimate"])
            lower = float(mean["confidence_interval"]["lower_bound"])
            upper = float(mean["confidence_interval"]["upper_bound"])
        except (KeyError, TypeError, ValueError) as error:
            sys.exit(
                f"criterion-table: {estimates_path} is not a criterion estimates file "
                f"(missing or bad {error})"
            )
        found.append(
            (
                benchmark_id(new_dir, root),
                duration(median),
                interval(lower, upper, mean_point),
            )
        )
    return sorted(found)


def main(argv):
    if len(argv) > 2 or (len(argv) == 2 and argv[1] in ("-h", "--help")):
        print(__doc__.strip(), file=sys.stderr)
        return 2
    root = Path(argv[1] if len(argv) == 2 else "target/criterion")
    if not root.is_dir():
        print(
            f"criterion-table: {root} is not a directory; run "
            "`CRITERION_HOME=target/criterion target/release/tollgate-hot-paths --bench` first, or pass the criterion "
            "output directory (usually target/criterion)",
            file=sys.stderr,
        )
        return 1
    table = rows(root)
    if not table:
        print(
            f"criterion-table: no benchmark results (**/new/estimates.json) under {root}; "
            "run `CRITERION_HOME=target/criterion target/release/tollgate-hot-paths --bench` first",
            file=sys.stderr,
        )
        return 1
    print("| Benchmark | Median | 95% CI of the mean |")
    print("| --- | ---: | ---: |")
    for bench_id, median, ci in table:
        escaped = bench_id.replace("|", "\\|")
        print(f"| `{escaped}` | {median} | {ci} |")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
