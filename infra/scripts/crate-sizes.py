#!/usr/bin/env python3
"""Where a binary's code size goes, by crate: sums `nm -C -S` text symbol sizes per crate.

    infra/scripts/crate-sizes.py BINARY [TOP]

Needs an unstripped binary (make bench builds the x86_64 ones with CARGO_PROFILE_RELEASE_STRIP=none).
Generic code instantiated from core/alloc/std is attributed to the first other crate in its name.
Prints a Markdown table of the TOP (default 12) crates.
"""
import subprocess, sys, re, collections
binary = sys.argv[1]
top = int(sys.argv[2]) if len(sys.argv) > 2 else 12
out = subprocess.run(["nm", "-C", "-S", "--size-sort", binary], capture_output=True, text=True).stdout
sizes = collections.Counter(); total = 0
for line in out.splitlines():
    parts = line.split(None, 3)
    if len(parts) < 4 or parts[2] not in "tTwW": continue
    size = int(parts[1], 16); name = parts[3]; total += size
    # crate of the innermost impl/fn: strip leading generic wrappers
    n = name
    m = re.match(r'^(?:<)*(?:core::ptr::drop_in_place<)?<?([A-Za-z_][A-Za-z0-9_]*)::', n)
    crate = m.group(1) if m else ("C and assembly (ring, libc glue)" if "::" not in n else "?")
    if crate in ("core","alloc","std") and ("<" in n):
        # attribute generic instantiations to the first non-std crate mentioned
        for m2 in re.finditer(r'<(?:&(?:mut )?|\*(?:const|mut) )*([a-z_][a-z0-9_]*)::', n):
            if m2.group(1) not in ("core", "alloc", "std"):
                crate = m2.group(1) + " (via std generics)"
                break
    sizes[crate] += size
if total == 0:
    sys.exit(f"crate-sizes: no symbols in {binary} (stripped?)")
print(f"| Crate | MB of code | share |")
print(f"|---|---:|---:|")
for crate, size in sizes.most_common(top):
    print(f"| {crate.strip() or '?'} | {size / 1048576:.2f} | {100 * size / total:.0f} % |")
print(f"| all code symbols | {total / 1048576:.2f} | 100 % |")
