#!/usr/bin/env bash
# The end-to-end run on a kind cluster, one step per subcommand (so each is its own step in e2e.yml):
#   docker-insecure   let the runner's Docker push to the registry on the kind network (plain HTTP)
#   registry          start the registry on the kind network; nodes pull from it over HTTP
#   snapshot FILE     list every cluster-scoped object (before deploying, to compare after destroying)
#   deploy            pulumi up the minikube stack with the kind overrides and the policy pack
#   put-data          log pachctl in with the stack's root token, put the data set into raw_data
#   serve             wait for export, deploy its image (serving:modelTag = the job ID), pulumi up again
#   predict           send the tutorial's request and check the answer holds a title
#   destroy FILE      pulumi destroy; check the namespace and every cluster-scoped object the stack made are gone
#   diagnose          print what helps after a failure
#
# Why the registry is named by its IP on the kind network: the export pipeline (`stages export`) pushes to and pulls
# its base image from it from inside a pod, where `localhost:5001` is the pod itself; like go-containerregistry it
# talks plain HTTP to private (RFC 1918) addresses without an --insecure flag, containerd gets a hosts.toml for it,
# and the runner's Docker lists 172.16.0.0/12 as an insecure registry range. One name then works for the runner, the
# nodes and pods.
set -euo pipefail

CLUSTER_NAME="${CLUSTER_NAME:-issue-titles-e2e}"
STACK="${STACK:-minikube}"
NAMESPACE="${NAMESPACE:-issue-titles}"
SERVING_NAMESPACE="${SERVING_NAMESPACE:-$NAMESPACE-serving}"  # = serving:namespace (Seldon and the model)
MODEL_PORT=9000  # the model's own HTTP port: no Seldon executor (infra/serving.py says why)
REGISTRY_NAME="${REGISTRY_NAME:-kind-registry}"
PART_OF="app.kubernetes.io/part-of=issue-titles"
MODEL="issue-summarization"
DATA="data/github_pr_issues_large.csv.gz"  # the vendored data set; split reads .csv.gz as it is
WAIT_PIPELINES="${WAIT_PIPELINES:-60m}"

log() { printf '\n== %s\n' "$*"; }
fail() { echo "::error::$*"; exit 1; }

registry_address() {
  local ip
  ip="$(docker inspect -f '{{(index .NetworkSettings.Networks "kind").IPAddress}}' "$REGISTRY_NAME")"
  [[ -n "$ip" ]] || fail "registry $REGISTRY_NAME has no address on the kind network"
  echo "$ip:5000"
}

cmd_docker_insecure() {
  log "Docker: plain-HTTP registries allowed on 172.16.0.0/12 (the kind network)"
  local config=/etc/docker/daemon.json current
  current="$(sudo cat "$config" 2>/dev/null || echo '{}')"
  echo "$current" | jq '. + {"insecure-registries": ((."insecure-registries" // []) + ["172.16.0.0/12"] | unique)}' \
    | sudo tee "$config" >/dev/null
  sudo systemctl restart docker
  docker info --format '{{json .RegistryConfig.InsecureRegistryCIDRs}}'
}

cmd_registry() {
  log "registry $REGISTRY_NAME on the kind network"
  if [[ "$(docker inspect -f '{{.State.Running}}' "$REGISTRY_NAME" 2>/dev/null || true)" != "true" ]]; then
    docker run -d --restart=always --name "$REGISTRY_NAME" --network kind -p 127.0.0.1:5001:5000 registry:2.8.3
  fi
  local address
  address="$(registry_address)"
  for node in $(kind get nodes --name "$CLUSTER_NAME"); do
    docker exec "$node" mkdir -p "/etc/containerd/certs.d/$address"
    printf '[host."http://%s"]\n' "$address" | docker exec -i "$node" cp /dev/stdin "/etc/containerd/certs.d/$address/hosts.toml"
  done
  echo "REGISTRY=$address" >> "${GITHUB_ENV:-/dev/null}"
  echo "registry at $address (runner, nodes and pods)"
}

cmd_snapshot() {
  local out="${1:?usage: e2e.sh snapshot FILE}"
  # Everything cluster-scoped and listable, except what the cluster itself churns (CSRs from kubelet rotation).
  kubectl api-resources --namespaced=false --verbs=list -o name \
    | grep -v -E '^(certificatesigningrequests|componentstatuses)' \
    | while read -r kind; do kubectl get "$kind" -o name 2>/dev/null || true; done \
    | sort > "$out"
  echo "$(wc -l < "$out") cluster-scoped objects in $out"
}

cmd_deploy() {
  local address="${REGISTRY:-$(registry_address)}"
  log "pulumi up $STACK on kind-$CLUSTER_NAME (registry $address)"
  pulumi login --local
  pulumi stack select --create --secrets-provider passphrase "$STACK"
  pulumi config set issue-titles:kubeContext "kind-$CLUSTER_NAME"
  pulumi config set issue-titles:pachdAddress grpc://localhost:30080
  pulumi config set issue-titles:stageImageRepo "$address/issue-titles/stages"
  pulumi config set issue-titles:sampleSize 300
  pulumi config set issue-titles:epochs 1
  pulumi config set issue-titles:beatBaseline false  # 1 epoch on 300 rows proves the path, not the model
  pulumi config set registry:server "$address"
  pulumi config set registry:username e2e
  # The registry has no auth; the program still requires a secret password and must keep it secret.
  printf '%s' "$REGISTRY_PASSWORD" | pulumi config set --secret registry:password
  # Pachyderm's auth is on (the chart's default): its root token, pinned by the program, as a secret.
  : "${PACHD_ROOT_TOKEN:?set PACHD_ROOT_TOKEN (e.g. openssl rand -hex 32)}"
  printf '%s' "$PACHD_ROOT_TOKEN" | pulumi config set --secret issue-titles:pachdRootToken
  pulumi config set serving:imageRepo "$address/issue-titles/serving"
  pulumi config set serving:ingress none  # port-forward to the Seldon service instead
  pulumi up --yes --policy-pack policy --diff
}

cmd_put_data() {
  log "put the data set into raw_data"
  pachctl connect grpc://localhost:30080
  pachctl_login
  pachctl version
  pachctl list repo
  pachctl put file "raw_data@master:/issues.csv.gz" -f "$DATA"
  pachctl list commit raw_data@master
}

pachctl_login() {
  # `pachctl auth use-auth-token` reads the token from stdin (a pipe: up to the newline) into pachctl's config,
  # so it never appears in an argument or the log.
  pulumi config get issue-titles:pachdRootToken | pachctl auth use-auth-token >/dev/null
  pachctl auth whoami
}

cmd_serve() {
  log "wait for split -> pre_process -> train -> build -> export (at most $WAIT_PIPELINES)"
  timeout "$WAIT_PIPELINES" pachctl wait commit export@master
  pachctl list job
  local image_json tag pushed
  image_json="$(pachctl get file export@master:/image.json)"
  echo "$image_json" | jq .
  pushed="$(echo "$image_json" | jq -r .pushed)"
  [[ "$pushed" == "true" ]] || fail "export did not push the serving image: $(echo "$image_json" | jq -r .reason)"
  tag="$(echo "$image_json" | jq -r .image | sed 's/.*://')"
  [[ "$tag" =~ ^[0-9a-f]{32}$ ]] || fail "the serving image tag '$tag' is not a Pachyderm job ID"
  log "serve the model exported by job $tag"
  pulumi config set serving:modelTag "$tag"
  pulumi up --yes --policy-pack policy --diff
  kubectl -n "$SERVING_NAMESPACE" wait "seldondeployment/$MODEL" --for=jsonpath='{.status.state}'=Available --timeout=15m
}

cmd_predict() {
  log "the tutorial's request"
  kubectl -n "$SERVING_NAMESPACE" port-forward "svc/$MODEL-default" "8000:$MODEL_PORT" > port-forward.log 2>&1 &
  local forward=$!
  trap 'kill "$forward" 2>/dev/null || true' RETURN
  local body='{"data":{"ndarray":[["The training fails with an out of memory error on the GPU node when the batch size is above 64. Steps to reproduce: run the train pipeline with the default settings."]]}}'
  local answer="" attempt
  for attempt in $(seq 1 30); do
    if answer="$(curl -sS --fail -X POST -H 'Content-Type: application/json' -d "$body" \
        http://localhost:8000/api/v1.0/predictions)"; then
      break
    fi
    echo "attempt $attempt: not answering yet"; sleep 5
  done
  echo "$answer" | jq .
  local title
  title="$(echo "$answer" | jq -r '[.data.ndarray | .. | strings] | first // ""')"
  [[ -n "${title// /}" ]] || fail "no title in data.ndarray: $answer"
  echo "title: $title"
}

cmd_destroy() {
  local before="${1:?usage: e2e.sh destroy SNAPSHOT_BEFORE}"
  log "pulumi destroy"
  pulumi destroy --yes
  .github/scripts/verify-destroyed.sh "$STACK"

  log "the namespaces are gone"
  local attempt namespace
  for namespace in "$NAMESPACE" "$SERVING_NAMESPACE"; do
    for attempt in $(seq 1 60); do
      kubectl get namespace "$namespace" >/dev/null 2>&1 || break
      [[ "$attempt" -lt 60 ]] || fail "namespace $namespace still exists 10 minutes after destroy"
      sleep 10
    done
  done

  log "no cluster-scoped object labelled $PART_OF"
  local labelled
  labelled="$(kubectl get clusterroles,clusterrolebindings,crd,namespaces,validatingwebhookconfigurations,mutatingwebhookconfigurations,persistentvolumes -l "$PART_OF" -o name)"
  [[ -z "$labelled" ]] || fail "left after destroy: $labelled"

  log "cluster-scoped objects match the snapshot taken before the first up (helm and kustomize objects too)"
  local after extra
  after="$(mktemp)"
  for attempt in $(seq 1 30); do  # persistent volumes are released asynchronously
    cmd_snapshot "$after" >/dev/null
    extra="$(comm -13 "$before" "$after")"
    [[ -n "$extra" ]] || break
    [[ "$attempt" -lt 30 ]] || fail "cluster-scoped objects left after destroy:
$extra"
    sleep 10
  done
  echo "nothing left"
}

cmd_diagnose() {
  set +e
  kubectl get pods -A -o wide
  kubectl -n "$NAMESPACE" get events --sort-by=.lastTimestamp | tail -n 50
  pachctl list pipeline
  pachctl list job
  # No Loki (lokiDeploy and lokiLogging off): pachd and kubectl read the worker pods' own logs, while they exist
  # (labels and container from pachyderm 2.12.x src/server/pps/server/api_server.go, pipelineLabels; `user`).
  for pipeline in split pre_process train build export; do
    pachctl logs --pipeline "$pipeline" 2>/dev/null | tail -n 30
    kubectl -n "$NAMESPACE" logs -l "app=pipeline,pipelineName=$pipeline" -c user --tail 30 2>/dev/null
  done
  kubectl -n "$SERVING_NAMESPACE" get events --sort-by=.lastTimestamp | tail -n 50
  kubectl -n "$SERVING_NAMESPACE" describe seldondeployment "$MODEL"
  cat port-forward.log 2>/dev/null
}

command="${1:?usage: e2e.sh COMMAND [ARGS] (see the header)}"
shift
case "$command" in
  docker-insecure) cmd_docker_insecure "$@" ;;
  registry) cmd_registry "$@" ;;
  snapshot) cmd_snapshot "$@" ;;
  deploy) cmd_deploy "$@" ;;
  put-data) cmd_put_data "$@" ;;
  serve) cmd_serve "$@" ;;
  predict) cmd_predict "$@" ;;
  destroy) cmd_destroy "$@" ;;
  diagnose) cmd_diagnose "$@" ;;
  *) fail "unknown command $command (see the header of $0)" ;;
esac
