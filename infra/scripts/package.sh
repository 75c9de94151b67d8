#!/usr/bin/env bash
# `make package`: every function as an arm64 Lambda artifact, built the way `sam build` builds it
# (BuildMethod rust-cargolambda): `cargo lambda build --release --arm64`, one `bootstrap` per
# function in target/lambda/<name>/, zipped beside it (bootstrap.zip, what Lambda downloads).
#
#   infra/scripts/package.sh [EXTRA_PACKAGE...]
#
# cargo-lambda and zig (the cross C compiler and linker; ring builds C and assembly) come from PyPI into
# the project venv (infra/requirements-package.txt); the Rust standard library for
# aarch64-unknown-linux-gnu comes from rustup. Prints each artifact's size; the table is also
# written to target/lambda/sizes.tsv (name, bootstrap bytes, zip bytes).
# EXTRA_PACKAGE: more workspace binaries to build alongside (make bench adds hello-world).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$root"
started_at=$(date +%s)

venv="$(infra/scripts/venv.sh package)"
export PATH="$venv/bin:$PATH"
rustup target add aarch64-unknown-linux-gnu >/dev/null 2>&1 ||
  rustup target list --installed | grep -qx aarch64-unknown-linux-gnu ||
  { echo "package: rustup could not install the aarch64-unknown-linux-gnu standard library" >&2; exit 1; }

functions=()
for manifest in functions/*/Cargo.toml; do functions+=("$(basename "$(dirname "$manifest")")"); done
packages=("${functions[@]}" "$@")
args=()
for package in "${packages[@]}"; do args+=(--package "$package"); done

echo "package: cargo lambda build --release --arm64 ${args[*]}"
cargo lambda build --release --arm64 "${args[@]}"
for package in "${packages[@]}"; do
  [[ -f "target/lambda/$package/bootstrap" ]] ||
    { echo "package: target/lambda/$package/bootstrap was not built" >&2; exit 1; }
done

sizes="target/lambda/sizes.tsv"
printf 'function\tbootstrap_bytes\tzip_bytes\n' >"$sizes"
printf '%-18s %14s %14s\n' function bootstrap bootstrap.zip
for package in "${packages[@]}"; do
  dir="target/lambda/$package"
  # Deflate, as `sam build`/`sam deploy` zip the artifact; the file keeps Lambda's name and mode.
  python3 - "$dir" <<'PY'
import os, sys, zipfile
directory = sys.argv[1]
source = os.path.join(directory, "bootstrap")
info = zipfile.ZipInfo("bootstrap", date_time=(2026, 1, 1, 0, 0, 0))
info.external_attr = 0o755 << 16
info.compress_type = zipfile.ZIP_DEFLATED
with open(source, "rb") as f, zipfile.ZipFile(os.path.join(directory, "bootstrap.zip"), "w") as z:
    z.writestr(info, f.read(), compresslevel=9)
PY
  raw=$(stat -c %s "$dir/bootstrap")
  zipped=$(stat -c %s "$dir/bootstrap.zip")
  printf '%s\t%s\t%s\n' "$package" "$raw" "$zipped" >>"$sizes"
  awk -v n="$package" -v r="$raw" -v z="$zipped" 'BEGIN { printf "%-18s %11.2f MB %11.2f MB\n", n, r / 1048576, z / 1048576 }'
done
echo "package: done in $(( $(date +%s) - started_at )) s; sizes in $sizes"
