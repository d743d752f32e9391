#!/usr/bin/env bash
# Docker Compose for the instance stack (systemd/cvstack-stack.service):
#
#   compose.sh up               start the stack detached, then wait until every container with
#                               a health check is healthy (fails naming the one that is not)
#   compose.sh ARGS...          any other compose command (down, ps, logs, config, ...)
#
# Runs `docker compose` (the v2 plugin, as on the Ubuntu Deep Learning AMI) or else
# `docker-compose` (v1, Debian's package), which has no `up --wait`: so the wait is done here
# for both. Files: ami/compose.yaml (CPU-clean), plus ami/compose.gpu.yaml (the GPU reservation)
# when TRITON_FLAVOUR is gpu; variables from ami/versions.env (the environment wins).
set -euo pipefail

AMI_DIR="${CVSTACK_AMI_DIR:-$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)}"
VERSIONS="${CVSTACK_VERSIONS_FILE:-$AMI_DIR/versions.env}"
PROJECT="${CVSTACK_COMPOSE_PROJECT:-cvstack}"
HEALTH_TIMEOUT_S="${CVSTACK_HEALTH_TIMEOUT_S:-600}"
HEALTH_POLL_S="${CVSTACK_HEALTH_POLL_S:-2}"

die() {
  echo "compose: $*" >&2
  exit 1
}

[[ -f "$VERSIONS" ]] || die "no $VERSIONS (the pinned images and TRITON_FLAVOUR)"
flavour="${TRITON_FLAVOUR:-$(sed -n 's/^TRITON_FLAVOUR=//p' "$VERSIONS" | tail -n 1)}"
files=(-f "$AMI_DIR/compose.yaml")
case "$flavour" in
  gpu) files+=(-f "$AMI_DIR/compose.gpu.yaml") ;;
  cpu) ;;
  *) die "TRITON_FLAVOUR must be cpu or gpu (in $VERSIONS), not '$flavour'" ;;
esac

if docker compose version >/dev/null 2>&1; then
  compose=(docker compose)
elif command -v docker-compose >/dev/null; then
  compose=(docker-compose)
else
  die "neither the compose plugin (docker compose) nor docker-compose is installed"
fi
compose+=(--project-name "$PROJECT" --env-file "$VERSIONS" "${files[@]}")

health_of() {  # $1: container id -> "<service> <health, or none> <state>"
  docker inspect --format \
    '{{index .Config.Labels "com.docker.compose.service"}} {{if .State.Health}}{{.State.Health.Status}}{{else}}none{{end}} {{.State.Status}}' \
    "$1"
}

last_health_log() {  # $1: container id -> the newest health check result, on one line
  docker inspect --format \
    '{{if .State.Health}}{{range .State.Health.Log}}exit {{.ExitCode}}: {{printf "%q" .Output}}{{println}}{{end}}{{end}}' \
    "$1" | sed '/^$/d' | tail -n 1
}

containers() {
  "${compose[@]}" ps --all -q
}

check_once() {  # dies on an unhealthy or exited container; sets `waiting` to those starting
  local id service health state
  waiting=()
  for id in "$@"; do
    read -r service health state < <(health_of "$id") || die "cannot inspect container $id"
    if [[ "$state" == exited || "$state" == dead ]]; then
      die "service $service exited during start: see 'journalctl CONTAINER_TAG=cvstack-$service'"
    fi
    case "$health" in
      healthy | none) ;;
      unhealthy) die "service $service is unhealthy; last health check: $(last_health_log "$id")" ;;
      *) waiting+=("$service:$id") ;;
    esac
  done
}

waiting=()

wait_healthy() {
  local deadline=$((SECONDS + HEALTH_TIMEOUT_S)) ids service
  mapfile -t ids < <(containers)
  ((${#ids[@]})) || die "no containers after 'up': see 'journalctl -u cvstack-stack'"
  while true; do
    check_once "${ids[@]}"
    ((${#waiting[@]})) || break
    if ((SECONDS >= deadline)); then
      service="${waiting[0]%%:*}"
      die "service $service not healthy after ${HEALTH_TIMEOUT_S}s; last health check: $(last_health_log "${waiting[0]#*:}")"
    fi
    sleep "$HEALTH_POLL_S"
  done
  echo "compose: every service with a health check is healthy"
}

if [[ "${1:-}" == up ]]; then
  shift
  if ! "${compose[@]}" up --detach "$@"; then
    # A dependency that never became healthy stops `up` itself: name it.
    mapfile -t ids < <(containers)
    ((${#ids[@]} == 0)) || check_once "${ids[@]}"
    die "'up' failed (see above)"
  fi
  wait_healthy
else
  exec "${compose[@]}" "$@"
fi
