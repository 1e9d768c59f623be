#!/usr/bin/env bash
# weavenomad's own steps on one node, once Docker, Weave, Consul and Nomad are installed:
#   1. wait (bounded) until Consul and Nomad have elected leaders: bootstrap records the Weave
#      range in Consul KV and checks the node's Docker driver through the Nomad servers, and both
#      need the 3-server quorum;
#   2. weavenomad bootstrap --peer ... : launch the Weave peer, expose the default and tenant
#      subnets, point Nomad's Docker driver at the Weave proxy, restart Nomad, check it;
#   3. weavenomad reconciler install and weavenomad guard install: their systemd units (the
#      reconciler; the keeper of the isolation guards, which a reboot would otherwise drop),
#      enabled and started; each skipped when the unit on disk is the one it would write and
#      it is enabled and running.
# Inputs are arguments and the usual environment (NOMAD_ADDR, CONSUL_HTTP_ADDR, DOCKER_HOST,
# WEAVE_HTTP_ADDR, WEAVENOMAD_NOMAD_CONFIG, WEAVENOMAD_NOMAD_RESTART_COMMAND ...), so the same
# script runs on a Vagrant VM (through weavenomad-bootstrap.service, see
# provision-weavenomad-install.sh) and inside a node of the local lab, in the environment
# `weavenomad lab exec NODE --` gives (tests/lab/test_provision_lab.py; a lab node has no
# systemd, so the test hands the unit step a recording systemctl and a unit directory of its
# own). Running it again changes nothing: bootstrap leaves a bootstrapped node alone.
#
# Usage: provision-weavenomad.sh --peer ADDR [--peer ADDR ...] [--ipalloc-range CIDR]
#          [--default-subnet CIDR] [--wait SECONDS] [--unit-dir DIR]
#   --wait                 how long to wait for the Consul and Nomad leaders [300]
#   --unit-dir             where the systemd units go [/etc/systemd/system]
# Environment: WEAVENOMAD_COMMAND, the weavenomad command [weavenomad].
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=provision-lib.sh
source "$here/provision-lib.sh"

RECONCILER_UNIT="weavenomad-reconciler.service"
GUARDS_UNIT="weavenomad-guards.service"
peers=() ipalloc_range=10.32.0.0/16 default_subnet=10.32.0.0/24 wait_seconds=300
unit_dir=/etc/systemd/system
while (($#)); do
  case $1 in
    --peer) need_value "$@"; peers+=("$2"); shift 2 ;;
    --ipalloc-range) need_value "$@"; ipalloc_range=$2; shift 2 ;;
    --default-subnet) need_value "$@"; default_subnet=$2; shift 2 ;;
    --wait) need_value "$@"; wait_seconds=$2; shift 2 ;;
    --unit-dir) need_value "$@"; unit_dir=$2; shift 2 ;;
    -h | --help) print_help; exit 0 ;;
    *) usage_error "unknown argument: $1" ;;
  esac
done
((${#peers[@]})) || usage_error "at least one --peer is required (the other nodes)"
for peer in "${peers[@]}"; do
  valid_address "$peer" || usage_error "not a peer address: $peer"
done
valid_cidr "$ipalloc_range" || usage_error "not a CIDR: $ipalloc_range"
valid_cidr "$default_subnet" || usage_error "not a CIDR: $default_subnet"
[[ $wait_seconds =~ ^[0-9]+$ ]] || usage_error "--wait takes whole seconds, not $wait_seconds"

weavenomad=${WEAVENOMAD_COMMAND:-weavenomad}
command -v "$weavenomad" >/dev/null \
  || die "$weavenomad is not installed (provision-weavenomad-install.sh installs it)"
command -v curl >/dev/null || die "curl is missing (apt-get install curl)"

# base_url ADDR SCHEME: ADDR with a scheme (CONSUL_HTTP_ADDR is usually host:port)
base_url() {
  if [[ $1 == *://* ]]; then printf '%s\n' "${1%/}"; else printf '%s://%s\n' "$2" "${1%/}"; fi
}

# wait_for_leader NAME URL CACERT: until URL (a /v1/status/leader) names a leader. Leader
# election offers no blocking query, so this polls, every 2 s, until --wait runs out.
wait_for_leader() {
  local name=$1 url=$2 cacert=$3 deadline=$((SECONDS + wait_seconds)) answer tls=()
  if [[ -n $cacert ]]; then
    tls=(--cacert "$cacert")
  fi
  while :; do
    answer=$(curl --fail --silent --max-time 5 "${tls[@]}" "$url" 2>/dev/null) || answer=""
    if [[ $answer =~ ^\"[^\"]+\"$ ]]; then
      log "$name has a leader: $answer"
      return 0
    fi
    if ((SECONDS >= deadline)); then
      die "$name has no leader after ${wait_seconds}s ($url answered '${answer}'): are the" \
        "other servers up and reachable? Raise --wait on a slow start."
    fi
    sleep 2
  done
}

consul_scheme=http
if [[ ${CONSUL_HTTP_SSL:-false} =~ ^(1|true|yes|on)$ ]]; then
  consul_scheme=https
fi
wait_for_leader Consul \
  "$(base_url "${CONSUL_HTTP_ADDR:-127.0.0.1:8500}" "$consul_scheme")/v1/status/leader" \
  "${CONSUL_CACERT:-}"
wait_for_leader Nomad \
  "$(base_url "${NOMAD_ADDR:-http://127.0.0.1:4646}" http)/v1/status/leader" \
  "${NOMAD_CACERT:-}"

bootstrap_args=()
for peer in "${peers[@]}"; do
  bootstrap_args+=(--peer "$peer")
done
bootstrap_args+=(--ipalloc-range "$ipalloc_range" --default-subnet "$default_subnet")
log "weavenomad bootstrap ${bootstrap_args[*]}"
"$weavenomad" bootstrap "${bootstrap_args[@]}"

# install_unit UNIT COMMAND: `weavenomad COMMAND install`, unless its unit is already there,
# enabled and running
install_unit() {
  local unit=$1 command=$2 wanted
  wanted=$("$weavenomad" "$command" install --print)
  if same_file_content "$unit_dir/$unit" "$wanted" \
      && systemctl is-enabled --quiet "$unit" \
      && systemctl is-active --quiet "$unit"; then
    log "$unit is installed, enabled and running"
  else
    "$weavenomad" "$command" install --unit-dir "$unit_dir"
  fi
}

install_unit "$RECONCILER_UNIT" reconciler
install_unit "$GUARDS_UNIT" guard
