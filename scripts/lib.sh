# Bash helpers shared by scripts/test-engine and scripts/test-hosts (sourced, not run).
# The sourcing script sets LOG (its log file) before calling them; messages name the script.

SCRIPT=${0##*/}

fail() { echo "$SCRIPT: $*" >&2; echo "$SCRIPT: see $LOG" >&2; exit 1; }
log() { echo "[$(date -u +%FT%TZ)] $*" >>"$LOG"; }

need_root() {
    [ "$(uname -s)" = Linux ] && [ "$(id -u)" = 0 ] || fail "cannot go on ($1): run as root on Linux"
}

apt_install() {  # package...: installs the missing ones with Debian's apt, starting no service
    local missing=()
    for pkg in "$@"; do dpkg -s "$pkg" >/dev/null 2>&1 || missing+=("$pkg"); done
    [ ${#missing[@]} -eq 0 ] && return 0
    need_root "installing ${missing[*]}"
    log "apt-get install ${missing[*]}"
    # Debian's packages would try to start services through init scripts; we start our own.
    printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d && chmod +x /usr/sbin/policy-rc.d
    { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}"; } >>"$LOG" 2>&1 \
        || { rm -f /usr/sbin/policy-rc.d; fail "apt-get install ${missing[*]} failed"; }
    rm -f /usr/sbin/policy-rc.d
}

http_answers() {  # host:port: its registry answers /v2/ (a 401 of an auth registry counts)
    python3 - "$1" <<'PY' 2>/dev/null
import sys, urllib.request, urllib.error
try:
    urllib.request.urlopen(f"http://{sys.argv[1]}/v2/", timeout=2)
except urllib.error.HTTPError:
    pass
PY
}

start_registry() {  # dir address data [htpasswd]: a docker-registry on address, storage in data
    local dir=$1 address=$2 data=$3 htpasswd=${4:-}
    http_answers "$address" && return 0
    command -v docker-registry >/dev/null || fail "docker-registry is not installed (run scripts/test-engine)"
    mkdir -p "$dir" "$data"
    {
        echo "version: 0.1"
        echo "log: {level: warn}"
        echo "storage: {filesystem: {rootdirectory: $data}, delete: {enabled: true}}"
        echo "http: {addr: $address}"
        [ -z "$htpasswd" ] || echo "auth: {htpasswd: {realm: deployer-test, path: $htpasswd}}"
    } >"$dir/config.yml"
    log "starting registry on $address (storage $data)"
    # No inherited descriptors: a caller reading our output (pytest) or holding our lock
    # must not wait for the registry.
    setsid docker-registry serve "$dir/config.yml" >>"$dir/registry.log" 2>&1 </dev/null 9>&- &
    echo $! >"$dir/registry.pid"
    for _ in $(seq 1 40); do http_answers "$address" && return 0; sleep 0.25; done
    fail "the registry did not answer on $address (see $dir/registry.log)"
}
