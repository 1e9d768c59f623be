#!/usr/bin/env bash
# A Nomad server + client of the 3-server cluster, as in the seed.
#
# /etc/nomad.d/nomad.hcl: server (bootstrap_expect = 3, retry_join the other nodes) and client on
# every node, advertising the node's private address; the client fingerprints the interface that
# holds that address (not the NAT one Vagrant adds first), and the agent registers its services
# with the local Consul agent.
# /etc/nomad.d/docker.hcl: the Docker driver, first pointed at Docker's own socket. It is written
# only when missing: `weavenomad bootstrap` points it at the Weave proxy socket (keeping the
# original as docker.hcl.weavenomad.bak, which Nomad ignores), and provisioning again must not
# undo that.
# Run provision-base.sh, provision-hashicorp.sh and provision-consul.sh first.
#
# Usage: provision-nomad.sh --node-ip IP --join IP [--join IP ...] [--datacenter NAME]
#        (root; idempotent: files are rewritten and Nomad restarted only when they differ)
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=provision-lib.sh
source "$here/provision-lib.sh"

node_ip="" datacenter=dc1 joins=()
while (($#)); do
  case $1 in
    --node-ip) need_value "$@"; node_ip=$2; shift 2 ;;
    --join) need_value "$@"; joins+=("$2"); shift 2 ;;
    --datacenter) need_value "$@"; datacenter=$2; shift 2 ;;
    -h | --help) print_help; exit 0 ;;
    *) usage_error "unknown argument: $1" ;;
  esac
done
[[ -n $node_ip ]] || usage_error "--node-ip is required"
((${#joins[@]})) || usage_error "at least one --join is required"
for address in "$node_ip" "${joins[@]}"; do
  valid_address "$address" || usage_error "not an address: $address"
done
[[ $datacenter =~ ^[a-z0-9_-]+$ ]] || usage_error "not a datacenter name: $datacenter"
require_root
[[ -x /usr/local/bin/nomad ]] || die "nomad is not installed: run provision-hashicorp.sh first"

interface=$(ip -o -4 addr show | awk -v ip="$node_ip" 'index($4, ip "/") == 1 { print $2; exit }')
[[ -n $interface ]] || die "no interface holds $node_ip (is the private network up?)"

install -d -m 0755 -o root -g root /etc/nomad.d
install -d -m 0700 -o root -g root /opt/nomad

retry_join=$(printf '"%s", ' "${joins[@]}")
update_file /etc/nomad.d/nomad.hcl 644 root:root "$(cat <<EOF
# Written by scripts/provision-nomad.sh; provisioning rewrites it. The Docker driver's
# settings live in docker.hcl, which weavenomad bootstrap edits.
datacenter = "$datacenter"
data_dir   = "/opt/nomad"
bind_addr  = "0.0.0.0"

advertise {
  http = "$node_ip"
  rpc  = "$node_ip"
  serf = "$node_ip"
}

server {
  enabled          = true
  bootstrap_expect = 3

  server_join {
    retry_join = [${retry_join%, }]
  }
}

client {
  enabled           = true
  network_interface = "$interface"
}

consul {
  address = "127.0.0.1:8500"
}
EOF
)"
config_changed=$CHANGED

create_file_once /etc/nomad.d/docker.hcl 644 root:root "$(cat <<'EOF'
# Written once by scripts/provision-nomad.sh. `weavenomad bootstrap` points the endpoint at the
# Weave proxy socket (the original stays in docker.hcl.weavenomad.bak); provisioning leaves this
# file alone from then on.
plugin "docker" {
  config {
    endpoint = "unix:///var/run/docker.sock"
  }
}
EOF
)"
if ((CHANGED)); then
  config_changed=1
fi

update_file /etc/systemd/system/nomad.service 644 root:root "$(cat <<'EOF'
# Written by scripts/provision-nomad.sh; provisioning rewrites it.
[Unit]
Description=Nomad agent
Documentation=https://www.nomadproject.io/docs/
Wants=network-online.target consul.service docker.service
After=network-online.target consul.service docker.service

[Service]
# root: the client runs tasks through Docker and manages their directories.
ExecStart=/usr/local/bin/nomad agent -config=/etc/nomad.d
ExecReload=/bin/kill -HUP $MAINPID
# Only the agent is stopped on restart: the task containers belong to dockerd and are
# re-attached by the new agent.
KillMode=process
KillSignal=SIGINT
Restart=on-failure
RestartSec=2
LimitNOFILE=65536
LimitNPROC=infinity
TasksMax=infinity
OOMScoreAdjust=-1000

[Install]
WantedBy=multi-user.target
EOF
)"
ensure_service nomad.service "$CHANGED" "$config_changed"
