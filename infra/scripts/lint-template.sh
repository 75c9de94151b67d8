#!/usr/bin/env bash
# Lints template.yaml with cfn-lint, `sam validate --lint` and parliament (the
# functions' IAM policies), offline. cfn-lint and sam must pass with zero errors
# and zero warnings (cfn-lint exits non-zero on any finding, informational ones
# included: the default of --non-zero-exit-code; `sam validate --lint` fails on
# any cfn-lint match); parliament with no unknown action and nothing above LOW.
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

# parliament (IAM linter) over every function's inline policy: each policy document is taken
# out of the template with the venv's PyYAML (CloudFormation's short-form tags resolved to
# plausible ARNs of this account and region) and analysed. An unknown action or prefix, or any
# finding above LOW, fails the lint.
echo "== parliament: every function's IAM policy"
"${venv}/bin/python" - template.yaml <<'PY'
import json
import sys

import yaml
from parliament import analyze_policy_string, enhance_finding

REGION, ACCOUNT = "us-east-1", "123456789012"
SEVERITIES = ["MUTE", "INFO", "LOW", "MEDIUM", "HIGH", "CRITICAL"]


class Tagged:
    def __init__(self, tag, value):
        self.tag, self.value = tag, value


class Loader(yaml.SafeLoader):
    pass


def construct(loader, suffix, node):
    if isinstance(node, yaml.ScalarNode):
        value = loader.construct_scalar(node)
    elif isinstance(node, yaml.SequenceNode):
        value = loader.construct_sequence(node, deep=True)
    else:
        value = loader.construct_mapping(node, deep=True)
    return Tagged(suffix, value)


Loader.add_multi_constructor("!", construct)

with open(sys.argv[1]) as handle:
    template = yaml.load(handle, Loader=Loader)
resources = template["Resources"]


def attribute(name, attr):
    kind = resources[name]["Type"]
    if kind == "AWS::DynamoDB::Table" and attr == "Arn":
        return f"arn:aws:dynamodb:{REGION}:{ACCOUNT}:table/tollgate-dev"
    if kind == "AWS::DynamoDB::Table" and attr == "StreamArn":
        # A real label is a timestamp with colons, which parliament's ARN matching splits on.
        return f"arn:aws:dynamodb:{REGION}:{ACCOUNT}:table/tollgate-dev/stream/label"
    if kind == "AWS::SQS::Queue" and attr == "Arn":
        return f"arn:aws:sqs:{REGION}:{ACCOUNT}:tollgate-dev-{name}"
    raise SystemExit(f"parliament: no plausible value for !GetAtt {name}.{attr}")


def reference(name):
    kind = resources.get(name, {}).get("Type")
    if kind == "AWS::SecretsManager::Secret":
        return f"arn:aws:secretsmanager:{REGION}:{ACCOUNT}:secret:tollgate/dev-AbCdEf"
    if kind == "AWS::DynamoDB::Table":
        return "tollgate-dev"
    raise SystemExit(f"parliament: no plausible value for !Ref {name}")


def resolve(value):
    if isinstance(value, Tagged):
        if value.tag == "GetAtt":
            name, attr = value.value.split(".", 1) if isinstance(value.value, str) else value.value
            return attribute(name, attr)
        if value.tag == "Ref":
            return reference(value.value)
        if value.tag == "Sub" and isinstance(value.value, str):
            text = value.value
            while "${" in text:
                start = text.index("${")
                end = text.index("}", start)
                inner = text[start + 2 : end]
                replacement = attribute(*inner.split(".", 1)) if "." in inner else reference(inner)
                text = text[:start] + replacement + text[end + 1 :]
            return text
        raise SystemExit(f"parliament: cannot resolve !{value.tag} {value.value!r}")
    if isinstance(value, list):
        return [resolve(item) for item in value]
    if isinstance(value, dict):
        return {key: resolve(item) for key, item in value.items()}
    return value


failed = False
policies = 0
for name, resource in resources.items():
    if resource.get("Type") != "AWS::Serverless::Function":
        continue
    for index, document in enumerate(resource["Properties"].get("Policies", [])):
        if not isinstance(document, dict) or "Statement" not in document:
            print(f"{name}: policy {index} is not an inline policy document; lint it by hand")
            failed = True
            continue
        policies += 1
        policy = analyze_policy_string(json.dumps(resolve(document)))
        for finding in policy.findings:
            finding = enhance_finding(finding)
            invalid = finding.issue in ("UNKNOWN_ACTION", "UNKNOWN_PREFIX")
            above_low = SEVERITIES.index(finding.severity) > SEVERITIES.index("LOW")
            print(f"{name}: {finding.severity} {finding.issue} {finding.detail}")
            failed = failed or invalid or above_low
sys.stdout.flush()
if failed:
    raise SystemExit("parliament: the findings above fail the lint")
print(f"parliament: {policies} policies, no unknown action, nothing above LOW")
PY
