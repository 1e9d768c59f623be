#!/usr/bin/env bash
# A Consul server of the 3-server cluster, as in the seed, and the node's DNS for `.consul`.
#
# Consul: server on every node, bootstrap_expect = 3, retry_join the other nodes, bound to the
# node's private address, HTTP API and DNS (port 8600) on all addresses (client_addr 0.0.0.0),
# run by systemd as the user consul. Run provision-hashicorp.sh first.
#
# DNS: dnsmasq, not systemd-resolved. The seed's jobs send their containers' DNS queries to the
# nodes' own addresses (dns_servers = ["192.168.56.3", ...]), so each node needs a resolver
# listening on its private address, port 53, that forwards `.consul` to Consul on 8600 and the
# rest upstream: dnsmasq's everyday job. Debian 12 does not install systemd-resolved, whose stub
# only listens on 127.0.0.53 unless told otherwise. The node itself uses dnsmasq too: 127.0.0.1
# goes first in /etc/resolv.conf (and dhclient is told to keep it there).
#
# Usage: provision-consul.sh --node-ip IP --join IP [--join IP ...] [--datacenter NAME]
#        (root; idempotent: files are rewritten and services restarted only when they differ)
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=provision-lib.sh
source "$here/provision-lib.sh"

CONSUL_DNS_PORT=8600
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
[[ -x /usr/local/bin/consul ]] || die "consul is not installed: run provision-hashicorp.sh first"

# --- Consul ----------------------------------------------------------------------------------

if ! id -u consul >/dev/null 2>&1; then
  useradd --system --home-dir /etc/consul.d --no-create-home --shell /usr/sbin/nologin consul
  log "created the user consul"
fi
install -d -m 0750 -o consul -g consul /opt/consul /etc/consul.d

retry_join=$(printf '"%s", ' "${joins[@]}")
update_file /etc/consul.d/consul.hcl 640 consul:consul "$(cat <<EOF
# Written by scripts/provision-consul.sh; provisioning rewrites it.
datacenter       = "$datacenter"
data_dir         = "/opt/consul"
server           = true
bootstrap_expect = 3
ui               = true
bind_addr        = "$node_ip"
advertise_addr   = "$node_ip"
client_addr      = "0.0.0.0"
retry_join       = [${retry_join%, }]

ports {
  dns = $CONSUL_DNS_PORT
}
EOF
)"
config_changed=$CHANGED

update_file /etc/systemd/system/consul.service 644 root:root "$(cat <<'EOF'
# Written by scripts/provision-consul.sh; provisioning rewrites it.
[Unit]
Description=Consul agent
Documentation=https://www.consul.io/docs/
Wants=network-online.target
After=network-online.target

[Service]
User=consul
Group=consul
ExecStart=/usr/local/bin/consul agent -config-dir=/etc/consul.d
ExecReload=/bin/kill -HUP $MAINPID
# SIGTERM without leave_on_terminate: a restarting server keeps its place in the quorum.
KillMode=process
KillSignal=SIGTERM
Restart=on-failure
RestartSec=2
LimitNOFILE=65536

[Install]
WantedBy=multi-user.target
EOF
)"
ensure_service consul.service "$CHANGED" "$config_changed"

# --- DNS: dnsmasq forwards .consul to Consul ---------------------------------------------------

ensure_packages dnsmasq
update_file /etc/dnsmasq.d/10-consul 644 root:root "$(cat <<EOF
# Written by scripts/provision-consul.sh; provisioning rewrites it.
# Answer on loopback and on the node's private address (the seed's jobs use it as dns_servers);
# bind-dynamic copes with the address appearing after dnsmasq starts.
bind-dynamic
listen-address=127.0.0.1,$node_ip
# .consul goes to the local Consul agent, everything else to the upstream servers of
# /etc/resolv.conf (dnsmasq skips its own 127.0.0.1 there).
server=/consul/127.0.0.1#$CONSUL_DNS_PORT
EOF
)"
ensure_service dnsmasq.service 0 "$CHANGED"

# The node's own lookups go through dnsmasq. dhclient rewrites /etc/resolv.conf on every lease,
# so it is told to keep 127.0.0.1 first; the current file is fixed now.
if [[ -f /etc/dhcp/dhclient.conf ]] \
    && ! grep -qx 'prepend domain-name-servers 127.0.0.1;' /etc/dhcp/dhclient.conf; then
  printf '%s\n' 'prepend domain-name-servers 127.0.0.1;' >>/etc/dhcp/dhclient.conf
  log "dhclient keeps 127.0.0.1 first in /etc/resolv.conf"
fi
if [[ -L /etc/resolv.conf ]]; then
  log "warning: /etc/resolv.conf is a symlink (another resolver manages it): not changed;" \
    "point it at 127.0.0.1 to resolve .consul on this node"
elif [[ $(awk '$1 == "nameserver" { print $2; exit }' /etc/resolv.conf) != 127.0.0.1 ]]; then
  update_file /etc/resolv.conf 644 root:root "$(
    printf 'nameserver 127.0.0.1\n'
    grep -vx 'nameserver 127.0.0.1' /etc/resolv.conf || true
  )"
fi
