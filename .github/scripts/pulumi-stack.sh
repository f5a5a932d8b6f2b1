#!/usr/bin/env bash
# Select (or create) a stack and set its registry password as a secret, for the preview/deploy/destroy workflows.
#   usage: pulumi-stack.sh STACK
# Reads REGISTRY_PASSWORD (a repository or environment secret) and, when set, GCP_PROJECT. The password goes to
# `pulumi config set --secret` on standard input: it is never an argument (visible in `ps`) and never echoed.
set -euo pipefail

stack="${1:?usage: pulumi-stack.sh STACK}"
: "${REGISTRY_PASSWORD:?set the REGISTRY_PASSWORD secret (the registry token export pushes with)}"

pulumi login ${PULUMI_BACKEND_URL:+"$PULUMI_BACKEND_URL"}
pulumi stack select --create "$stack"
printf '%s' "$REGISTRY_PASSWORD" | pulumi config set --secret --stack "$stack" registry:password
if [[ -n "${GCP_PROJECT:-}" && "$stack" == gke-* ]]; then
  pulumi config set --stack "$stack" gcp:project "$GCP_PROJECT"
fi
echo "stack $stack selected; registry:password set as a secret"
