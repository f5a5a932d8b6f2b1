#!/usr/bin/env bash
# Select (or create) a stack and set its registry password and Pachyderm root token as secrets, for the
# preview/deploy/destroy workflows.
#   usage: pulumi-stack.sh STACK
# Reads REGISTRY_PASSWORD and PACHD_ROOT_TOKEN (repository or environment secrets) and, when set, GCP_PROJECT. Both
# secrets go to `pulumi config set --secret` on standard input: never an argument (visible in `ps`), never echoed.
set -euo pipefail

stack="${1:?usage: pulumi-stack.sh STACK}"
: "${REGISTRY_PASSWORD:?set the REGISTRY_PASSWORD secret (the registry token export pushes with)}"
: "${PACHD_ROOT_TOKEN:?set the PACHD_ROOT_TOKEN secret (the Pachyderm root token: openssl rand -hex 32)}"

pulumi login ${PULUMI_BACKEND_URL:+"$PULUMI_BACKEND_URL"}
pulumi stack select --create "$stack"
printf '%s' "$REGISTRY_PASSWORD" | pulumi config set --secret --stack "$stack" registry:password
printf '%s' "$PACHD_ROOT_TOKEN" | pulumi config set --secret --stack "$stack" issue-titles:pachdRootToken
if [[ -n "${GCP_PROJECT:-}" && "$stack" == gke-* ]]; then
  pulumi config set --stack "$stack" gcp:project "$GCP_PROJECT"
fi
echo "stack $stack selected; registry:password and issue-titles:pachdRootToken set as secrets"
