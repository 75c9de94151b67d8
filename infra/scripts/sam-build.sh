#!/usr/bin/env bash
# `make sam-build` (and .ci/run): `sam build --beta-features`, as `sam deploy` would package the
# stack, then checks that every rust-cargolambda function of template.yaml has its `bootstrap` in
# .aws-sam/build/<LogicalId>/ and that it is a 64-bit aarch64 ELF; prints the sizes.
#
#   infra/scripts/sam-build.sh
#
# Offline: no AWS credentials or profile, telemetry off, a region set (sam refuses to start
# without one). sam, cargo-lambda and zig come from the project venv (infra/scripts/venv.sh sets
# `tools` and `package`); the aarch64 standard library from rustup.
#
# Speed: SAM's rust-cargolambda builder runs `cargo lambda build --release --arm64 --bin <Binary>`
# once per function, in the source tree (CodeUri, the workspace root), with CARGO_TARGET_DIR set to
# the workspace's target/ unless it is already set. So the first function's build compiles the
# dependencies and the other ten reuse them: each only compiles its small crate and links. Without a
# package selection at the workspace root, cargo resolves features over every workspace member, so
# these artifacts are not `make package`'s (`--package` per function, another feature set).
# `--parallel` gains nothing: concurrent cargo builds wait on the same target-directory lock.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$root"
started_at=$(date +%s)

infra/scripts/venv.sh tools >/dev/null
venv="$(infra/scripts/venv.sh package)"
export PATH="$venv/bin:$PATH"
rustup target add aarch64-unknown-linux-gnu >/dev/null 2>&1 ||
  rustup target list --installed | grep -qx aarch64-unknown-linux-gnu ||
  { echo "sam-build: rustup could not install the aarch64-unknown-linux-gnu standard library" >&2; exit 1; }

export SAM_CLI_TELEMETRY=0
export AWS_DEFAULT_REGION="${AWS_DEFAULT_REGION:-us-east-1}"
export AWS_EC2_METADATA_DISABLED=true
unset AWS_PROFILE AWS_ACCESS_KEY_ID AWS_SECRET_ACCESS_KEY AWS_SESSION_TOKEN

rm -rf .aws-sam/build
sam_started_at=$(date +%s)
echo "sam-build: sam build --beta-features (cargo's output is shown only when a build fails)"
sam build --beta-features
built_at=$(date +%s)

# Every function of the template that SAM builds with cargo-lambda, checked in the build output.
python3 - <<'PY'
import os
import sys

import yaml


class TemplateLoader(yaml.SafeLoader):
    """Reads CloudFormation's short-form tags (!Ref, !Sub ...) as plain values."""


def plain(loader, suffix, node):
    if isinstance(node, yaml.ScalarNode):
        return loader.construct_scalar(node)
    if isinstance(node, yaml.SequenceNode):
        return loader.construct_sequence(node)
    return loader.construct_mapping(node)


TemplateLoader.add_multi_constructor("!", plain)
with open("template.yaml", encoding="utf-8") as file:
    template = yaml.load(file, Loader=TemplateLoader)

functions = sorted(
    name
    for name, resource in template["Resources"].items()
    if resource.get("Type") == "AWS::Serverless::Function"
    and (resource.get("Metadata") or {}).get("BuildMethod") == "rust-cargolambda"
)
failures = []
print(f"{'function':<26} {'bootstrap':>12}")
for name in functions:
    path = os.path.join(".aws-sam", "build", name, "bootstrap")
    try:
        with open(path, "rb") as file:
            header = file.read(20)
        size = os.path.getsize(path)
    except OSError as error:
        failures.append(f"{path}: {error.strerror}")
        continue
    # ELF magic, EI_CLASS 2 (64-bit), EI_DATA 1 (little-endian), e_machine 183 (EM_AARCH64).
    if len(header) < 20 or header[:4] != b"\x7fELF" or header[4] != 2 or header[5] != 1:
        failures.append(f"{path}: not a 64-bit little-endian ELF")
    elif int.from_bytes(header[18:20], "little") != 183:
        failures.append(f"{path}: e_machine {int.from_bytes(header[18:20], 'little')}, not aarch64 (183)")
    elif not os.access(path, os.X_OK):
        failures.append(f"{path}: not executable")
    print(f"{name:<26} {size / 1048576:>9.2f} MB")
if not functions:
    failures.append("template.yaml has no rust-cargolambda function")
for failure in failures:
    print(f"sam-build: {failure}", file=sys.stderr)
if failures:
    sys.exit(1)
print(f"sam-build: {len(functions)} functions, each an aarch64 ELF bootstrap in .aws-sam/build/")
PY

echo "sam-build: done in $(( $(date +%s) - started_at )) s (sam build $(( built_at - sam_started_at )) s)"
