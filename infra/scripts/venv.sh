#!/usr/bin/env bash
# Idempotent Python venv for the project's tools, in <repo>/.venv.
#
#   infra/scripts/venv.sh [SET]
#
# SET picks the pinned requirement files installed into the venv:
#   tools        (default) infra/requirements.txt + infra/requirements-test.txt: cfn-lint,
#                aws-sam-cli, moto's server (make lint, make test)
#   package      infra/requirements-package.txt: cargo-lambda and ziglang (make package, make bench,
#                make sam-build)
#   conformance  infra/requirements-conformance.txt: schemathesis (make conformance)
# Each set is (re)installed only when its files (or the pip pin below) changed since its last
# successful install; the stamp is .venv/.requirements-<SET>.sha256.
# Prints the venv path on stdout; everything else is quiet unless it fails.
set -euo pipefail

script_dir="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo_root="$(cd "${script_dir}/../.." && pwd)"
venv="${repo_root}/.venv"
set_name="${1:-tools}"
case "${set_name}" in
  tools) files=("${repo_root}/infra/requirements.txt" "${repo_root}/infra/requirements-test.txt") ;;
  package) files=("${repo_root}/infra/requirements-package.txt") ;;
  conformance) files=("${repo_root}/infra/requirements-conformance.txt") ;;
  *) echo "venv.sh: unknown set '${set_name}' (tools, package or conformance)" >&2; exit 2 ;;
esac
stamp="${venv}/.requirements-${set_name}.sha256"

python="${PYTHON:-python3}"
# pip inside the venv is pinned too: the base interpreter's pip (23.x here)
# resolves aws-sam-cli's dependency tree about twice as slowly.
pip_version="26.3"

if [[ ! -x "${venv}/bin/python" ]]; then
  "${python}" -m venv "${venv}"
  rm -f "${venv}"/.requirements-*.sha256
fi

want="$( { echo "pip==${pip_version}"; cat "${files[@]}"; } | sha256sum | cut -d' ' -f1)"
have="$(cat "${stamp}" 2>/dev/null || true)"

if [[ "${want}" != "${have}" ]]; then
  log="$(mktemp)"
  trap 'rm -f "${log}"' EXIT
  pip=("${venv}/bin/python" -m pip install --quiet --disable-pip-version-check)
  requirements=()
  for file in "${files[@]}"; do requirements+=(-r "${file}"); done
  if ! { "${pip[@]}" "pip==${pip_version}" && "${pip[@]}" "${requirements[@]}"; } >"${log}" 2>&1; then
    cat "${log}" >&2
    echo "venv.sh: pip install of ${files[*]} failed" >&2
    exit 1
  fi
  printf '%s\n' "${want}" >"${stamp}"
fi

echo "${venv}"
