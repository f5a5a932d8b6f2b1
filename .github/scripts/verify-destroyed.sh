#!/usr/bin/env bash
# After `pulumi destroy`: fail if the stack's state still holds any resource besides the stack and its providers.
#   usage: verify-destroyed.sh STACK
set -euo pipefail

stack="${1:?usage: verify-destroyed.sh STACK}"
state="$(mktemp)"
trap 'rm -f "$state"' EXIT
pulumi stack export --stack "$stack" --file "$state"
python3 - "$state" "$stack" <<'PY'
import json
import sys

path, stack = sys.argv[1], sys.argv[2]
resources = (json.load(open(path)).get("deployment") or {}).get("resources") or []
left = [r["urn"] for r in resources
        if r.get("type") != "pulumi:pulumi:Stack" and not r.get("type", "").startswith("pulumi:providers:")]
if left:
    print(f"::error::stack {stack} still has {len(left)} resources after destroy:")
    print("\n".join(left))
    sys.exit(1)
print(f"stack {stack}: no resources left")
PY
