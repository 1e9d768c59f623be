#!/usr/bin/env bash
# weavenomad on a Vagrant VM: installed from the synced project folder into a virtualenv
# (/opt/weavenomad, command /usr/local/bin/weavenomad), then its node steps
# (provision-weavenomad.sh: bootstrap with the other nodes as peers, the reconciler service) run
# by the oneshot unit weavenomad-bootstrap.service.
#
# Why a unit: `vagrant up` provisions u1, u2 and u3 one after the other, and bootstrap needs the
# 3-server Consul and Nomad quorum, which exists only once u3's servers are up. So u1 and u2 start
# the unit without waiting for it (it waits for the leaders, then bootstraps), and the last node
# (--wait-for-bootstrap) runs it to the end and shows its log if it fails. The unit also runs at
# every boot, which re-exposes the Weave subnets after a reboot; on a node that needs nothing it
# changes nothing. Follow it with: journalctl -u weavenomad-bootstrap
#
# With --weave-version (a release of the fork rajch/weave, provision-weave.sh installed its
# command) and --docker-api-version (the fork's DOCKER_API_VERSION: Docker 29 and later want
# 1.44), the [weave] section of /etc/weavenomad/config.toml names them, so that bootstrap, the
# reconciler, the guards and doctor all run the weave command with that release's images.
#
# Usage: provision-weavenomad-install.sh --source DIR --peer ADDR [--peer ADDR ...]
#          [--ipalloc-range CIDR] [--default-subnet CIDR] [--wait-for-bootstrap]
#          [--weave-version X.Y.Z] [--docker-api-version 1.NN]
#        (root; idempotent: reinstalls only when the project's sources changed, and re-runs the
#        unit only when something it runs changed)
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=provision-lib.sh
source "$here/provision-lib.sh"

VENV=/opt/weavenomad
LIB_DIR=/usr/local/lib/weavenomad
UNIT=weavenomad-bootstrap.service
#: how long the unit waits for the Consul and Nomad leaders (a fresh cluster: until u3 is up)
LEADER_WAIT=3600
CONFIG=/etc/weavenomad/config.toml
LAST_WEAVEWORKS=2.8.1
FORK_OWNER=rajchaudhuri

source_dir="" peers=() ipalloc_range=10.32.0.0/16 default_subnet=10.32.0.0/24 block=0
weave_version="" docker_api_version=""
while (($#)); do
  case $1 in
    --source) need_value "$@"; source_dir=$2; shift 2 ;;
    --peer) need_value "$@"; peers+=("$2"); shift 2 ;;
    --ipalloc-range) need_value "$@"; ipalloc_range=$2; shift 2 ;;
    --default-subnet) need_value "$@"; default_subnet=$2; shift 2 ;;
    --wait-for-bootstrap) block=1; shift ;;
    --weave-version) need_value "$@"; weave_version=$2; shift 2 ;;
    --docker-api-version) need_value "$@"; docker_api_version=$2; shift 2 ;;
    -h | --help) print_help; exit 0 ;;
    *) usage_error "unknown argument: $1" ;;
  esac
done
[[ -n $source_dir ]] || usage_error "--source is required (the project folder, /vagrant)"
[[ -f $source_dir/pyproject.toml && -d $source_dir/weavenomad ]] \
  || usage_error "$source_dir is not the weavenomad project folder"
((${#peers[@]})) || usage_error "at least one --peer is required (the other nodes)"
for peer in "${peers[@]}"; do
  valid_address "$peer" || usage_error "not a peer address: $peer"
done
valid_cidr "$ipalloc_range" || usage_error "not a CIDR: $ipalloc_range"
valid_cidr "$default_subnet" || usage_error "not a CIDR: $default_subnet"
[[ -z $weave_version || $weave_version =~ ^[0-9]+\.[0-9]+\.[0-9]+$ ]] \
  || usage_error "not a Weave version: $weave_version"
[[ -z $docker_api_version || $docker_api_version =~ ^1\.[0-9]+$ ]] \
  || usage_error "not a Docker API version: $docker_api_version"
require_root

# --- the Weave release, for every weavenomad command -------------------------------------------

config_changed=0
if [[ -n $weave_version ]]; then
  owner=weaveworks
  if [[ $(printf '%s\n%s\n' "$weave_version" "$LAST_WEAVEWORKS" | sort -V | tail -n 1) \
      != "$LAST_WEAVEWORKS" ]]; then
    owner=$FORK_OWNER
  fi
  settings=$(printf '[weave]\nversion = "%s"\nimage_owner = "%s"' "$weave_version" "$owner")
  if [[ -n $docker_api_version ]]; then
    settings+=$(printf '\ndocker_api_version = "%s"' "$docker_api_version")
  fi
  update_file "$CONFIG" 644 root:root "# Written by scripts/provision-weavenomad-install.sh; provisioning rewrites it.
$settings"
  config_changed=$CHANGED
fi

# --- weavenomad into a virtualenv --------------------------------------------------------------

# Debian 12's Python is 3.11 and externally managed (PEP 668): hence the virtualenv.
ensure_packages python3-venv curl
source_files=(pyproject.toml README.md weavenomad)
source_digest=$(cd "$source_dir" \
  && find "${source_files[@]}" -type f ! -path '*/__pycache__/*' ! -name '*.pyc' -print0 \
  | LC_ALL=C sort -z | xargs -0 sha256sum | sha256sum | awk '{ print $1 }')
installed=0
if [[ $(cat "$VENV/.source-sha256" 2>/dev/null || true) == "$source_digest" ]] \
    && "$VENV/bin/weavenomad" --version >/dev/null 2>&1; then
  log "weavenomad from $source_dir is installed"
else
  log "installing weavenomad from $source_dir into $VENV"
  build=$(mktemp -d)
  trap 'rm -rf "$build"' EXIT
  # pip builds in the source tree; a copy keeps the synced folder clean
  (cd "$source_dir" && cp -a "${source_files[@]}" "$build/")
  if [[ ! -x $VENV/bin/python ]]; then
    python3 -m venv "$VENV"
  fi
  "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check --upgrade "$build"
  printf '%s\n' "$source_digest" >"$VENV/.source-sha256"
  installed=1
fi
if [[ $(readlink /usr/local/bin/weavenomad || true) != "$VENV/bin/weavenomad" ]]; then
  ln -sfn "$VENV/bin/weavenomad" /usr/local/bin/weavenomad
  log "linked /usr/local/bin/weavenomad"
fi
log "$(/usr/local/bin/weavenomad --version)"

# --- the node steps, as a oneshot unit ---------------------------------------------------------

scripts_changed=0
for script in provision-lib.sh provision-weavenomad.sh; do
  update_file "$LIB_DIR/$script" 755 root:root "$(cat "$here/$script")"
  if ((CHANGED)); then
    scripts_changed=1
  fi
done

step_args=()
for peer in "${peers[@]}"; do
  step_args+=(--peer "$peer")
done
step_args+=(--ipalloc-range "$ipalloc_range" --default-subnet "$default_subnet")
step_args+=(--wait "$LEADER_WAIT")
update_file "/etc/systemd/system/$UNIT" 644 root:root "$(cat <<EOF
# Written by scripts/provision-weavenomad-install.sh; provisioning rewrites it.
[Unit]
Description=weavenomad bootstrap of this node (Weave peer, subnets, Nomad's Docker endpoint)
Documentation=file://$LIB_DIR/provision-weavenomad.sh
Wants=network-online.target
Requires=docker.service
After=network-online.target docker.service consul.service nomad.service dnsmasq.service

[Service]
Type=oneshot
RemainAfterExit=yes
ExecStart=$LIB_DIR/provision-weavenomad.sh ${step_args[*]}
TimeoutStartSec=$((LEADER_WAIT + 600))

[Install]
WantedBy=multi-user.target
EOF
)"
unit_changed=$CHANGED
if ((unit_changed)); then
  systemctl daemon-reload
fi
if ! systemctl is-enabled --quiet "$UNIT"; then
  systemctl enable --quiet "$UNIT"
  log "enabled $UNIT"
fi

# Run the unit when it has not succeeded yet, or again when what it runs changed.
start=(systemctl start)
if ((installed || scripts_changed || unit_changed || config_changed)); then
  start=(systemctl restart)
elif systemctl is-active --quiet "$UNIT"; then
  log "$UNIT has run: nothing to do"
  exit 0
fi
if ((block)); then
  log "${start[*]} $UNIT (waits for the Consul and Nomad leaders, then bootstraps)"
  if ! "${start[@]}" "$UNIT"; then
    journalctl --unit "$UNIT" --no-pager --lines 60 >&2 || true
    die "$UNIT failed (log above)"
  fi
  log "this node is bootstrapped; the other nodes' weavenomad-bootstrap.service ran alongside"
else
  "${start[@]}" --no-block "$UNIT"
  log "$UNIT started: it bootstraps this node once the Consul and Nomad servers have a quorum" \
    "(journalctl -u ${UNIT%.service})"
fi
