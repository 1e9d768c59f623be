#!/usr/bin/env bash
# Base of every node: the tools the other provisioning scripts use, iptables in legacy mode, and
# Docker Engine 20.10 from Debian 12's own docker.io package.
#
# Why these versions: Weave 2.8.1 speaks Docker API 1.18, which Docker >= 25 refuses (see
# docs/design.md). Debian 12 "bookworm" ships docker.io 20.10.24, which still accepts 1.18 (its
# minimum is 1.12) and is what weavenomad was verified with, so the Vagrant box is Debian 12 and
# Docker comes from Debian, not from download.docker.com (whose current releases are >= 25).
#
# Why legacy iptables: the weave 2.8.1 containers drive iptables through the legacy backend;
# Debian 12 defaults to the nftables one, and Weave's rules would then miss the ones Docker
# writes (weaveworks/weave#3465). The switch happens before Docker is installed, so Docker starts
# on the same backend.
#
# The example jobs in jobs/ run the image bb:local, as the recorded seed cluster did: Debian's
# static busybox imported into Docker (sh, httpd, nc, ping, wget), so no registry is needed.
#
# Usage: provision-base.sh          (root; idempotent)
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=provision-lib.sh
source "$here/provision-lib.sh"

#: the newest Docker Engine major version that still accepts Weave 2.8.1's API version 1.18
MAX_DOCKER_MAJOR=24

case ${1:-} in
  -h | --help)
    print_help
    exit 0
    ;;
  "") ;;
  *) usage_error "unexpected argument: $1" ;;
esac
require_root

ensure_packages ca-certificates curl gnupg unzip iptables busybox-static

# Each alternative is switched only when it is not legacy yet. A Docker that already runs on
# the other backend is restarted below, so its own rules move with it.
restart_docker=0
for tool in iptables ip6tables; do
  if [[ $(update-alternatives --query "$tool" | awk '$1 == "Value:" { print $2 }') \
      != "/usr/sbin/$tool-legacy" ]]; then
    update-alternatives --quiet --set "$tool" "/usr/sbin/$tool-legacy"
    log "$tool now uses the legacy backend"
    if package_installed docker.io; then
      restart_docker=1
    fi
  fi
done

ensure_packages docker.io

docker_version=$(dockerd --version | sed -n 's/^Docker version \([0-9][0-9.]*\).*/\1/p')
[[ -n $docker_version ]] || die "cannot read the Docker Engine version from 'dockerd --version'"
if ((${docker_version%%.*} > MAX_DOCKER_MAJOR)); then
  die "Docker Engine $docker_version rejects the Docker API 1.18 of Weave 2.8.1; use Debian 12's" \
    "docker.io (20.10) or a Docker <= $MAX_DOCKER_MAJOR"
fi
log "Docker Engine $docker_version"

ensure_service docker.service 0 "$restart_docker"

# The jobs' image: busybox-static as the rootfs, one symlink per applet.
if ! docker image inspect bb:local >/dev/null 2>&1; then
  rootfs=$(mktemp -d)
  trap 'rm -rf "$rootfs"' EXIT
  mkdir -p "$rootfs/bin" "$rootfs/tmp"
  cp /bin/busybox "$rootfs/bin/busybox"
  for applet in $("$rootfs/bin/busybox" --list); do
    [[ $applet == busybox ]] || ln -s busybox "$rootfs/bin/$applet"
  done
  tar -C "$rootfs" -c . | docker import - bb:local >/dev/null
  log "image bb:local imported from busybox-static"
fi
