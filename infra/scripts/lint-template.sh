#!/usr/bin/env bash
# Lints template.yaml with cfn-lint and `sam validate --lint`, offline.
# Both must pass with zero errors and zero warnings (cfn-lint exits non-zero
# on any finding, informational ones included: the default of
# --non-zero-exit-code). `sam validate --lint` fails on any cfn-lint match.
set -euo pipefail

script_dir="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo_root="$(cd "${script_dir}/../.." && pwd)"
venv="$("${script_dir}/venv.sh")"

cd "${repo_root}"

# Neither tool talks to AWS here: `sam validate --lint` needs only a region
# (it refuses to start without one) and no credentials. Telemetry off.
# sam's once-a-week "newer version?" look-up (PyPI JSON API, 5 s timeout) has
# no off switch; offline it fails silently and does not change the result.
export AWS_DEFAULT_REGION="${AWS_DEFAULT_REGION:-us-east-1}"
export AWS_EC2_METADATA_DISABLED=true
export SAM_CLI_TELEMETRY=0

echo "== cfn-lint template.yaml"
"${venv}/bin/cfn-lint" template.yaml
echo "cfn-lint: 0 errors, 0 warnings"

echo "== sam validate --lint --template template.yaml"
"${venv}/bin/sam" validate --lint --template template.yaml
