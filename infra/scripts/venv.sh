#!/usr/bin/env bash
# Idempotent Python venv for the infra tooling (cfn-lint, aws-sam-cli).
# Creates <repo>/.venv if missing and (re)installs infra/requirements.txt only
# when that file (or the pip pin below) changed since the last successful
# install; the stamp is .venv/.requirements.sha256.
# Prints the venv path on stdout; everything else is quiet unless it fails.
set -euo pipefail

script_dir="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo_root="$(cd "${script_dir}/../.." && pwd)"
venv="${repo_root}/.venv"
req="${repo_root}/infra/requirements.txt"
# Test-only tools (moto's server as a local Secrets Manager), installed alongside.
test_req="${repo_root}/infra/requirements-test.txt"
stamp="${venv}/.requirements.sha256"

python="${PYTHON:-python3}"
# pip inside the venv is pinned too: the base interpreter's pip (23.x here)
# resolves aws-sam-cli's dependency tree about twice as slowly.
pip_version="26.3"

if [[ ! -x "${venv}/bin/python" ]]; then
  "${python}" -m venv "${venv}"
  rm -f "${stamp}"
fi

want="$( { echo "pip==${pip_version}"; cat "${req}" "${test_req}"; } | sha256sum | cut -d' ' -f1)"
have="$(cat "${stamp}" 2>/dev/null || true)"

if [[ "${want}" != "${have}" ]]; then
  log="$(mktemp)"
  trap 'rm -f "${log}"' EXIT
  pip=("${venv}/bin/python" -m pip install --quiet --disable-pip-version-check)
  if ! { "${pip[@]}" "pip==${pip_version}" && "${pip[@]}" -r "${req}" -r "${test_req}"; } >"${log}" 2>&1; then
    cat "${log}" >&2
    echo "venv.sh: pip install of ${req} failed" >&2
    exit 1
  fi
  printf '%s\n' "${want}" >"${stamp}"
fi

echo "${venv}"
