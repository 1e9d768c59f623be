# shellcheck shell=bash disable=SC2034  # CHANGED is read by the scripts that source this file
# Helpers for the scripts/provision-*.sh scripts; sourced, never run on its own.
#
# Every helper looks before it changes anything (package installed? file content, mode and owner
# equal? unit enabled and active?), so running a provisioning script a second time changes
# nothing. Helpers that may change something set CHANGED to 1 when they did and to 0 when all was
# already as wanted. They are called as plain commands, never inside `if` or `||`: bash ignores
# `set -e` inside functions called there, and a failed step must stop the script.

set -euo pipefail

PROVISION_NAME=${PROVISION_NAME:-$(basename "$0" .sh)}
CHANGED=0

log() {
  printf '%s: %s\n' "$PROVISION_NAME" "$*"
}

die() {
  printf '%s: error: %s\n' "$PROVISION_NAME" "$*" >&2
  exit 1
}

usage_error() {
  printf '%s: %s (see --help)\n' "$PROVISION_NAME" "$*" >&2
  exit 2
}

# print_help: the script's header comment (line 2 up to `set -euo pipefail`)
print_help() {
  sed -n '2,/^set -euo pipefail/p' "$0" | sed '$d; s/^# \{0,1\}//'
}

require_root() {
  [[ $EUID -eq 0 ]] || die "must run as root (Vagrant runs provisioners with sudo)"
}

# need_value OPTION "$@": fail unless the option has a value after it
need_value() {
  [[ $# -ge 2 && -n $2 ]] || usage_error "$1 needs a value"
}

# An IPv4 address or host name, optionally :port: what may go into configs and unit files.
valid_address() {
  [[ $1 =~ ^[A-Za-z0-9]([A-Za-z0-9.-]*[A-Za-z0-9])?(:[0-9]{1,5})?$ ]]
}

valid_cidr() {
  [[ $1 =~ ^[0-9]{1,3}(\.[0-9]{1,3}){3}/[0-9]{1,2}$ ]]
}

# --- files -----------------------------------------------------------------------------------

# same_file_content PATH CONTENT: whether PATH holds exactly CONTENT plus a final newline
same_file_content() {
  [[ -f $1 && ! -L $1 ]] && printf '%s\n' "$2" | cmp -s - "$1"
}

# update_file PATH MODE OWNER CONTENT: make PATH hold CONTENT plus a final newline, with MODE
# (octal as `stat -c %a` prints it, e.g. 644) and OWNER (user:group). The text goes to a
# temporary file next to PATH that is renamed over it, so a reader never sees half a file.
update_file() {
  local path=$1 mode=$2 owner=$3 content=$4 temporary
  CHANGED=0
  if same_file_content "$path" "$content" \
      && [[ $(stat -c '%a %U:%G' "$path") == "$mode $owner" ]]; then
    return 0
  fi
  mkdir -p "$(dirname "$path")"
  temporary=$(mktemp "$path.XXXXXX")
  printf '%s\n' "$content" >"$temporary"
  chmod "$mode" "$temporary"
  chown "$owner" "$temporary"
  mv -f "$temporary" "$path"
  log "wrote $path"
  CHANGED=1
}

# create_file_once PATH MODE OWNER CONTENT: write PATH only when it does not exist, for files
# that another tool owns after their first version (Nomad's Docker endpoint: weavenomad
# bootstrap edits it, so provisioning must not put the old value back).
create_file_once() {
  CHANGED=0
  if [[ ! -e $1 ]]; then
    update_file "$@"
  fi
}

# --- packages and services -------------------------------------------------------------------

package_installed() {
  dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q 'install ok installed'
}

# ensure_packages PACKAGE...: apt-get install the ones missing (apt-get update only then)
ensure_packages() {
  local missing=() package
  CHANGED=0
  for package in "$@"; do
    package_installed "$package" || missing+=("$package")
  done
  if ((${#missing[@]} == 0)); then
    return 0
  fi
  log "installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  CHANGED=1
}

# ensure_service UNIT UNIT_CHANGED CONFIG_CHANGED: reload systemd when the unit file changed,
# enable the unit, restart it when its unit or config changed, start it when it is not running.
ensure_service() {
  local unit=$1 unit_changed=$2 config_changed=$3
  CHANGED=0
  if ((unit_changed)); then
    systemctl daemon-reload
  fi
  if ! systemctl is-enabled --quiet "$unit"; then
    systemctl enable --quiet "$unit"
    log "enabled $unit"
    CHANGED=1
  fi
  if ! systemctl is-active --quiet "$unit"; then
    systemctl start "$unit"
    log "started $unit"
    CHANGED=1
  elif ((unit_changed || config_changed)); then
    systemctl restart "$unit"
    log "restarted $unit"
    CHANGED=1
  fi
}

# --- downloads and their verification -------------------------------------------------------

# download URL DEST: HTTPS only, with timeouts and a few retries
download() {
  curl --fail --silent --show-error --location --proto '=https' --tlsv1.2 \
    --connect-timeout 20 --max-time 600 --retry 3 --retry-delay 2 -o "$2" "$1"
}

# listed_sha256_matches SUMS FILE NAME: FILE's SHA-256 is the one SUMS (sha256sum format) lists
# for NAME. A predicate: says why when it is false.
listed_sha256_matches() {
  local sums=$1 file=$2 name=$3 listed actual
  listed=$(awk -v name="$name" '$2 == name || $2 == "*" name { print $1; exit }' "$sums") \
    || return 1
  if [[ -z $listed ]]; then
    log "$name is not listed in $(basename "$sums")"
    return 1
  fi
  actual=$(sha256sum "$file" | awk '{ print $1 }') || return 1
  if [[ $actual != "$listed" ]]; then
    log "$name: SHA-256 $actual, but $(basename "$sums") lists $listed"
    return 1
  fi
}

# signed_by KEYFILE FINGERPRINT DATA SIGNATURE: SIGNATURE is a good detached signature of DATA
# made by the key whose primary fingerprint is FINGERPRINT (or by a signing subkey of it).
# KEYFILE may hold other keys too: only the pinned fingerprint is trusted. A key that has expired
# since still verifies (GnuPG reports VALIDSIG with EXPKEYSIG): releases outlive keys.
signed_by() {
  local keyfile=$1 fingerprint=$2 data=$3 signature=$4 home status
  home=$(mktemp -d) || return 1
  gpg --batch --quiet --homedir "$home" --import "$keyfile" >/dev/null 2>&1 || true
  status=$(gpg --batch --homedir "$home" --status-fd 1 --verify "$signature" "$data" \
    2>/dev/null) || true
  rm -rf "$home"
  if grep -qE '^\[GNUPG:\] (BADSIG|ERRSIG|REVKEYSIG)' <<<"$status"; then
    return 1
  fi
  awk -v want="${fingerprint^^}" '$1 == "[GNUPG:]" && $2 == "VALIDSIG" && toupper($NF) == want \
    { found = 1 } END { exit !found }' <<<"$status"
}
