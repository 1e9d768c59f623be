#!/usr/bin/env bash
# The weave command (by default 2.8.1's, the `weave` script of the GitHub release) in
# /usr/local/bin, checked.
# Weave is not launched here: `weavenomad bootstrap` launches it with the peers, the range and
# the default subnet (provision-weavenomad.sh).
#
# Weave 2.8.1 speaks Docker API 1.18, which Docker >= 25 rejects; provision-base.sh installs
# Debian 12's Docker 20.10 for that reason (see docs/design.md). A later --version is a release
# of the maintained fork rajch/weave (2.8.3 and later, images rajchaudhuri/weave*, API 1.24),
# which runs on a current Docker too.
#
# Verification: the release publishes no checksum for its `weave` asset. The same script ships
# inside Weaveworks' weaveexec image (/home/weave/weave, which `weave` runs for most commands),
# so the download must match that copy byte for byte: two channels (GitHub releases and Docker
# Hub) that an attacker would both have to control. When WEAVE_SCRIPT_SHA256 is set (below or in
# the environment) the script must also have that SHA-256; the log prints the value to pin.
# A mismatch stops provisioning and installs nothing. The fork's script comes from its
# weaveexec image (rajchaudhuri/weaveexec:VERSION, as 'weavenomad weave-upgrade' installs it):
# one channel, so pin WEAVE_SCRIPT_SHA256 for it.
#
# Usage: provision-weave.sh [--version X.Y.Z]     (root; idempotent)
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=provision-lib.sh
source "$here/provision-lib.sh"

WEAVE_VERSION=2.8.1
LAST_WEAVEWORKS=2.8.1
#: the fork's images' owner on Docker Hub
FORK_OWNER=rajchaudhuri
#: the SHA-256 of the verified weave 2.8.1 script, once someone has pinned it (empty: not yet)
WEAVE_SCRIPT_SHA256=${WEAVE_SCRIPT_SHA256:-}
#: where the image keeps its copy of the script
IMAGE_SCRIPT_PATH=/home/weave/weave
TARGET=/usr/local/bin/weave

while (($#)); do
  case $1 in
    --version) need_value "$@"; WEAVE_VERSION=$2; shift 2 ;;
    -h | --help) print_help; exit 0 ;;
    *) usage_error "unknown argument: $1" ;;
  esac
done
[[ $WEAVE_VERSION =~ ^[0-9]+\.[0-9]+\.[0-9]+$ ]] || usage_error "not a version: $WEAVE_VERSION"
[[ -z $WEAVE_SCRIPT_SHA256 || $WEAVE_SCRIPT_SHA256 =~ ^[0-9a-f]{64}$ ]] \
  || usage_error "WEAVE_SCRIPT_SHA256 must be 64 lowercase hex digits"
require_root
command -v docker >/dev/null || die "docker is missing: run provision-base.sh first"

# weaveworks' releases end at 2.8.1; later ones are the fork's
fork=0
if [[ $(printf '%s\n%s\n' "$WEAVE_VERSION" "$LAST_WEAVEWORKS" | sort -V | tail -n 1) \
    != "$LAST_WEAVEWORKS" ]]; then
  fork=1
fi
release_url="https://github.com/weaveworks/weave/releases/download/v$WEAVE_VERSION/weave"
exec_image="weaveworks/weaveexec:$WEAVE_VERSION"
if ((fork)); then
  exec_image="$FORK_OWNER/weaveexec:$WEAVE_VERSION"
fi
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# The image's copy, read without running anything from the image.
if ! docker image inspect "$exec_image" >/dev/null 2>&1; then
  log "pulling $exec_image"
  docker pull --quiet "$exec_image" >/dev/null
fi
container=$(docker create "$exec_image")
docker cp "$container:$IMAGE_SCRIPT_PATH" - | tar -xO -f - >"$work/from-image"
docker rm "$container" >/dev/null
[[ -s $work/from-image ]] || die "$exec_image holds no $IMAGE_SCRIPT_PATH"

acceptable() { # FILE: matches the image's copy and, when pinned, the pinned checksum
  cmp -s "$1" "$work/from-image" || return 1
  [[ -z $WEAVE_SCRIPT_SHA256 ]] || [[ $(sha256sum "$1" | awk '{ print $1 }') == "$WEAVE_SCRIPT_SHA256" ]]
}

if [[ -f $TARGET ]] && acceptable "$TARGET"; then
  log "weave $WEAVE_VERSION is installed"
  exit 0
fi

if ((fork)); then
  cp "$work/from-image" "$work/weave"
  log "the weave script of $exec_image (one channel: pin WEAVE_SCRIPT_SHA256)"
else
  log "downloading $release_url"
  download "$release_url" "$work/weave"
fi
grep -qx "SCRIPT_VERSION=\"$WEAVE_VERSION\"" "$work/weave" \
  || die "the downloaded weave script is not version $WEAVE_VERSION: not installed"
if ! cmp -s "$work/weave" "$work/from-image"; then
  die "the weave script from $release_url differs from the one in $exec_image: not installed"
fi
actual=$(sha256sum "$work/weave" | awk '{ print $1 }')
if [[ -n $WEAVE_SCRIPT_SHA256 && $actual != "$WEAVE_SCRIPT_SHA256" ]]; then
  die "the weave script has SHA-256 $actual, not the pinned $WEAVE_SCRIPT_SHA256: not installed"
fi
install -m 0755 -o root -g root "$work/weave" "$TARGET"
log "installed weave $WEAVE_VERSION (SHA-256 $actual; pin it as WEAVE_SCRIPT_SHA256)"
