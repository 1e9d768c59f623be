#!/usr/bin/env bash
# Base of every node: the tools the other provisioning scripts use, iptables in legacy mode, and
# Docker Engine: by default 20.10 from Debian 12's own docker.io package.
#
# Why these versions: Weave 2.8.1 speaks Docker API 1.18, which Docker >= 25 refuses (see
# docs/design.md). Debian 12 "bookworm" ships docker.io 20.10.24, which still accepts 1.18 (its
# minimum is 1.12) and is what weavenomad was verified with, so the Vagrant box is Debian 12 and
# Docker comes from Debian, not from download.docker.com (whose current releases are >= 25).
# With --docker docker-ce, Docker's own current release comes from download.docker.com (its
# apt key checked against the fingerprint Docker publishes); only a Weave that speaks API >= 1.24
# runs there, the maintained fork rajch/weave (2.8.3 and later), so --weave-version must name one:
# a weaveworks Weave (2.8.1 and older) next to a Docker >= 25 stops provisioning before Docker is
# installed.
#
# Why legacy iptables: the weave 2.8.1 containers drive iptables through the legacy backend;
# Debian 12 defaults to the nftables one, and Weave's rules would then miss the ones Docker
# writes (weaveworks/weave#3465). The switch happens before Docker is installed, so Docker starts
# on the same backend.
#
# The example jobs in jobs/ run the image bb:local, as the recorded seed cluster did: Debian's
# static busybox imported into Docker (sh, httpd, nc, ping, wget), so no registry is needed.
#
# Usage: provision-base.sh [--docker debian|docker-ce] [--weave-version X.Y.Z]   (root; idempotent)
#   --docker          where Docker comes from: debian (docker.io 20.10) or docker-ce [debian]
#   --weave-version   the Weave release the node will run [2.8.1]
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=provision-lib.sh
source "$here/provision-lib.sh"

#: the newest Docker Engine major version that still accepts Weave 2.8.1's API version 1.18
MAX_DOCKER_MAJOR=24
#: weaveworks' last release; later ones are the fork's, which speak API 1.24
LAST_WEAVEWORKS=2.8.1
#: Docker's apt signing key (https://docs.docker.com/engine/install/debian/)
DOCKER_KEY_FINGERPRINT=9DC858229FC7DD38854AE2D88D81803C0EBFCD88
DOCKER_KEY=/etc/apt/keyrings/docker.asc

docker_source=debian weave_version=$LAST_WEAVEWORKS
while (($#)); do
  case $1 in
    --docker) need_value "$@"; docker_source=$2; shift 2 ;;
    --weave-version) need_value "$@"; weave_version=$2; shift 2 ;;
    -h | --help) print_help; exit 0 ;;
    *) usage_error "unexpected argument: $1" ;;
  esac
done
[[ $docker_source == debian || $docker_source == docker-ce ]] \
  || usage_error "--docker takes debian or docker-ce, not $docker_source"
[[ $weave_version =~ ^[0-9]+\.[0-9]+\.[0-9]+$ ]] || usage_error "not a version: $weave_version"
# weaveworks' releases (up to 2.8.1) speak API 1.18; the fork's (2.8.3 and later) 1.24
weaveworks_weave=0
if [[ $(printf '%s\n%s\n' "$weave_version" "$LAST_WEAVEWORKS" | sort -V | tail -n 1) \
    == "$LAST_WEAVEWORKS" ]]; then
  weaveworks_weave=1
fi
if [[ $docker_source == docker-ce ]] && ((weaveworks_weave)); then
  usage_error "Weave $weave_version speaks Docker API 1.18, which Docker's current releases" \
    "refuse: --docker docker-ce needs the fork (e.g. --weave-version 2.9.0)"
fi
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

if [[ $docker_source == debian ]]; then
  ensure_packages docker.io
else
  # Docker's apt repository, trusted through the pinned fingerprint of its key only
  if [[ ! -s $DOCKER_KEY ]]; then
    key=$(mktemp)
    download https://download.docker.com/linux/debian/gpg "$key"
    if ! gpg --batch --with-colons --show-keys "$key" 2>/dev/null \
        | awk -F: -v want="$DOCKER_KEY_FINGERPRINT" '$1 == "fpr" && $10 == want { found = 1 }
                                                      END { exit !found }'; then
      rm -f "$key"
      die "the key from download.docker.com is not $DOCKER_KEY_FINGERPRINT: not trusted"
    fi
    install -D -m 0644 "$key" "$DOCKER_KEY"
    rm -f "$key"
    log "trusted Docker's apt key $DOCKER_KEY_FINGERPRINT"
  fi
  update_file /etc/apt/sources.list.d/docker.list 644 root:root \
    "deb [arch=$(dpkg --print-architecture) signed-by=$DOCKER_KEY] https://download.docker.com/linux/debian $(. /etc/os-release && echo "$VERSION_CODENAME") stable"
  ensure_packages docker-ce docker-ce-cli containerd.io
fi

docker_version=$(dockerd --version | sed -n 's/^Docker version \([0-9][0-9.]*\).*/\1/p')
[[ -n $docker_version ]] || die "cannot read the Docker Engine version from 'dockerd --version'"
if ((weaveworks_weave && ${docker_version%%.*} > MAX_DOCKER_MAJOR)); then
  die "Docker Engine $docker_version rejects the Docker API 1.18 of Weave $weave_version; use" \
    "Debian 12's docker.io (20.10), a Docker <= $MAX_DOCKER_MAJOR or the fork (--weave-version 2.9.0)"
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
