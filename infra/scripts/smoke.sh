#!/usr/bin/env bash
# Smoke test of a Tollgate deployment (or the dev gateway): walks the main flows over HTTP.
#
#   TOKEN=<user token> SERVICE_KEY=<service key> infra/scripts/smoke.sh BASE_URL
#
# BASE_URL: the API's base, e.g. https://abc123.execute-api.eu-west-1.amazonaws.com or
# http://127.0.0.1:3000. TOKEN: a token of a FRESH user (one with no organization yet) from the
# deployment's issuer. SERVICE_KEY: one of the keys whose SHA-256 is in SERVICE_KEY_HASHES.
#
# Safe against a real deployment: it creates one user (on the first GET /api/me) and ONE
# organization for that user, named "Smoke test <UTC time>", records one 125-second call
# (callId smoke-<time>) on it, and reads. It never calls Stripe (no checkout) and its webhook
# request is refused for its bad signature before anything is read or written. Remove the
# organization afterwards with DELETE /api/organization as that user if you wish.
#
# Use a user that belongs to no organization: a member's onboarding answers 409 and the script
# stops there (GET /api/me only lists invitations, it joins none).
#
# The token and the key go only to BASE_URL: it must be https:// (http:// only for a loopback
# host, as the dev gateway), and no redirect is followed.
#
# One line per step; exits 1 at the first unexpected status or body, 2 on bad usage.
set -euo pipefail
if [[ $# -ne 1 || -z "${TOKEN:-}" || -z "${SERVICE_KEY:-}" ]]; then
  echo "usage: TOKEN=<user token> SERVICE_KEY=<service key> $0 BASE_URL" >&2
  exit 2
fi
exec python3 - "$1" <<'PY'
import json
import os
import sys
import time
import urllib.error
import urllib.parse
import urllib.request

base = sys.argv[1].rstrip("/")
parsed_base = urllib.parse.urlsplit(base)
loopback = parsed_base.hostname in ("localhost", "::1") or (
    parsed_base.hostname or "").startswith("127.")
if not parsed_base.hostname or not (
        parsed_base.scheme == "https" or (parsed_base.scheme == "http" and loopback)):
    print(f"smoke.sh: BASE_URL must be https://... (http:// only on a loopback host), not {base!r}: "
          "the token and the service key would travel in clear text", file=sys.stderr)
    sys.exit(2)
token = os.environ["TOKEN"]
service_key = os.environ["SERVICE_KEY"]
stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


class NoRedirect(urllib.request.HTTPRedirectHandler):
    """A redirect is answered as it is: following it would send the token and the key elsewhere."""

    def redirect_request(self, req, fp, code, msg, headers, newurl):
        return None


opener = urllib.request.build_opener(NoRedirect)


def call(method, path, auth=None, body=None, headers=None):
    """(status, parsed JSON or None, raw text); status None when the server cannot be reached."""
    data = None if body is None else (body if isinstance(body, bytes) else json.dumps(body).encode())
    request = urllib.request.Request(base + path, data=data, method=method)
    request.add_header("accept", "application/json")
    if data is not None:
        request.add_header("content-type", "application/json")
    if auth:
        request.add_header("authorization", "Bearer " + auth)
    for name, value in (headers or {}).items():
        request.add_header(name, value)
    try:
        with opener.open(request, timeout=30) as response:
            status, raw = response.status, response.read()
    except urllib.error.HTTPError as error:
        status, raw = error.code, error.read()
    except (urllib.error.URLError, OSError) as error:
        return None, None, f"unreachable: {error}"
    text = raw.decode("utf-8", "replace")
    try:
        parsed = json.loads(text) if text else None
    except ValueError:
        parsed = None
    return status, parsed, text


def fail(step, why):
    print(f"FAIL {step}: {why}")
    sys.exit(1)


def step(name, method, path, expect, auth=None, body=None, headers=None, check=None):
    status, parsed, text = call(method, path, auth, body, headers)
    label = f"{method} {path}"
    if status is None:
        fail(name, f"{label}: {text}")
    if status not in expect:
        fail(name, f"{label} answered {status}, expected {'/'.join(map(str, expect))}: {text[:500]}")
    if parsed is None:
        fail(name, f"{label} answered {status} without a JSON body: {text[:500]}")
    if check:
        problem = check(parsed)
        if problem:
            fail(name, f"{label} answered {status} but {problem}: {text[:500]}")
    print(f"ok   {name}: {label} -> {status}")
    return parsed


def envelope(code):
    def check(body):
        if not isinstance(body, dict) or set(body) != {"error", "message"}:
            return "the body is not the error envelope {error, message}"
        if body["error"] != code:
            return f"error is {body['error']!r}, expected {code!r}"
        if not isinstance(body["message"], str) or not body["message"]:
            return "the message is empty"
        return None
    return check


def expect_fields(**fields):
    def check(body):
        for key, value in fields.items():
            actual = body
            for part in key.split("__"):
                actual = actual.get(part) if isinstance(actual, dict) else None
            if actual != value:
                return f"{key.replace('__', '.')} is {actual!r}, expected {value!r}"
        return None
    return check


print(f"smoke test of {base}")
step("no token", "GET", "/api/me", [401], check=envelope("missing_token"))

me = step("me", "GET", "/api/me", [200, 201], auth=token,
          check=lambda b: None if isinstance(b.get("user"), dict) and b["user"].get("id") else "there is no user.id")
if me.get("organization") is not None or me["user"].get("organizationId"):
    fail("me", "this user already belongs to an organization; the smoke test needs a fresh user")

org = step("onboarding", "POST", "/api/organizations", [201], auth=token,
           body={"name": f"Smoke test {stamp}"},
           check=lambda b: None if b.get("id") else "there is no id")
org_id = org["id"]

step("me as owner", "GET", "/api/me", [200], auth=token,
     check=expect_fields(user__role="OWNER", organization__id=org_id))

step("permission check", "POST", "/api/permissions/check", [200], auth=token,
     body={"permissions": ["users:read", "billing:read"], "features": ["apiAccess"]},
     check=lambda b: None if [r.get("decision") for r in b.get("results", [])] == ["allowed", "allowed"]
     and b.get("missing") == ["apiAccess"] and b.get("allowed") is False
     else "the owner is not allowed users:read and billing:read, or apiAccess is not missing without a plan")

call_body = {"organizationId": org_id, "callId": f"smoke-{stamp}", "durationSeconds": 125, "endedAt": stamp}
step("usage post", "POST", "/api/usage/calls", [201], auth=service_key, body=call_body,
     check=expect_fields(organizationId=org_id, minutes=3))
step("usage post repeated", "POST", "/api/usage/calls", [200], auth=service_key, body=call_body,
     check=expect_fields(minutes=3))
step("usage post with a user token", "POST", "/api/usage/calls", [403], auth=token, body=call_body,
     check=envelope("service_key_required"))

step("usage read", "GET", "/api/billing/usage", [200], auth=token,
     check=lambda b: None if b.get("minutes") == 3 and b.get("calls") == 1 else "minutes/calls are not 3/1")

step("subscription read", "GET", "/api/billing/subscription", [200], auth=token,
     check=expect_fields(status="none", plan=None))

now = int(time.time())
step("webhook with a bad signature", "POST", "/api/webhooks/stripe", [400],
     body=b'{"id":"evt_smoke","object":"event","type":"invoice.paid","data":{"object":{}}}',
     headers={"stripe-signature": f"t={now},v1={'0' * 64}"},
     check=envelope("invalid_signature"))

print(f"smoke test passed: organization {org_id}")
PY
