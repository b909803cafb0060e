# Shared settings and helpers for the ci/ scripts. Sourced, never run.

GHA_CLUSTER_DIR="${GHA_CLUSTER_DIR:-/tmp/spank-gha-cluster}"
GHA_TEST_USER="${GHA_TEST_USER:-gha-ci}"
GHA_TEST_USER_2="${GHA_TEST_USER_2:-gha-ci-2}"
# Where the cluster's dispatcher listens (plugstack.conf dispatcher_url points here).
GHA_DISPATCHER_PORT="${GHA_DISPATCHER_PORT:-6820}"
REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$REPO_ROOT/target}"

log() { printf '%s %s\n' "[$(date -u +%H:%M:%S)]" "$*" >&2; }
die() { log "error: $*"; exit 1; }

require_root() {
    [ "$(id -u)" = 0 ] || die "$(basename "$0") must run as root (it starts munged, slurmctld and slurmd)"
}

# Installs the Debian packages that are missing; runs apt-get update only when something is missing.
ensure_packages() {
    local missing=()
    local pkg
    for pkg in "$@"; do
        dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'install ok installed' || missing+=("$pkg")
    done
    [ ${#missing[@]} -eq 0 ] && return 0
    log "installing ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

# Every Debian package the cluster, the plugin's build (bindgen over Slurm's headers) and the
# tests need (tmux: the demo's hangup test closes a terminal as a user would; podman starts
# runners in images; python3-fuse runs the image tests' hanging FUSE mount). One list:
# ci/test, ci/slurm-up, ci/demo and ci/bench all install from it.
GHA_DEBIAN_PACKAGES=(slurmctld slurmd slurm-client munge libslurm-dev libclang-dev clang
    docker.io rootlesskit uidmap slirp4netns busybox-static systemd prometheus
    chromium tmux podman python3-fuse)

# Installs everything the ci/ scripts need (a fresh machine has none of it).
ensure_project_packages() {
    ensure_packages "${GHA_DEBIAN_PACKAGES[@]}"
}

# The web console's assets (console/dist, what server.console_dir names in tests and the demo),
# built from the pinned lockfile; npm ci only when the lockfile changed since the last install.
build_console() {
    local dir="$REPO_ROOT/console"
    if [ ! -f "$dir/node_modules/.package-lock.json" ] ||
        [ "$dir/package-lock.json" -nt "$dir/node_modules/.package-lock.json" ]; then
        log "npm ci (console)"
        (cd "$dir" && npm ci --no-audit --no-fund --loglevel=error)
    fi
    log "npm run build (console)"
    (cd "$dir" && npm run --silent build >/dev/null)
}

# Are munged, slurmctld and slurmd of the test cluster all running?
cluster_up() {
    pidfile_alive "$GHA_CLUSTER_DIR/run/munged.pid" munged &&
        pidfile_alive "$GHA_CLUSTER_DIR/run/slurmctld.pid" slurmctld &&
        pidfile_alive "$GHA_CLUSTER_DIR/run/slurmd.pid" slurmd
}

# The target directory cargo profile $1 builds into (`dev` builds into `debug`).
profile_dir() {
    if [ "$1" = dev ]; then echo debug; else echo "$1"; fi
}

# A missing Rust toolchain is a clear failure rather than a confusing one later.
ensure_cargo() {
    command -v cargo >/dev/null || die "cargo is not on PATH; install Rust with rustup first"
}

# Is the process with the PID in file $1 alive and running the program named $2?
pidfile_alive() {
    local pidfile=$1 prog=$2 pid
    [ -s "$pidfile" ] || return 1
    # The daemon may exit (and remove its pidfile) after the test above.
    pid=$(cat "$pidfile" 2>/dev/null) || return 1
    [ -d "/proc/$pid" ] || return 1
    # A zombie has exited already; only its parent has not reaped it yet.
    [ "$(awk '{ print $3 }' "/proc/$pid/stat" 2>/dev/null)" != Z ] || return 1
    # comm is the name it was started under (Debian's alternatives make the file slurmd-wlm).
    [ "$(cat "/proc/$pid/comm" 2>/dev/null)" = "$prog" ]
}

# Keeps the kernel from handing slurmctld's, slurmd's and the dispatcher's ports to outgoing
# connections as their ephemeral source port (a machine whose ip_local_port_range starts below
# them could, and a dispatcher restarted a moment later would find its address in use), as an
# admin reserves a daemon's port. Best effort: a container may not allow the write.
reserve_daemon_ports() {
    local file=/proc/sys/net/ipv4/ip_local_reserved_ports wanted current
    wanted="6817,6818,$GHA_DISPATCHER_PORT"
    current=$(cat "$file" 2>/dev/null) || return 0
    if ! { [ -z "$current" ] && echo "$wanted" || echo "$current,$wanted"; } 2>/dev/null >"$file"; then
        log "note: cannot reserve ports $wanted ($file is not writable here)"
    fi
}

# Serialises slurm-up and slurm-down: test processes may ask for the cluster at the same time.
# The lock is inherited by slurm-down when slurm-up calls it, so it is taken only once.
hold_cluster_lock() {
    [ -n "${GHA_CLUSTER_LOCK_HELD:-}" ] && return 0
    exec 9>"$GHA_CLUSTER_DIR.lock"
    flock --timeout 600 9 || die "another slurm-up/slurm-down held $GHA_CLUSTER_DIR.lock for 10 minutes"
    export GHA_CLUSTER_LOCK_HELD=1
}

# Runs a driver (demo, bench) so that it and this script stop in order however the run ends.
# The driver runs in the background and this script waits for it with `wait`, which a trapped
# signal interrupts at once (bash runs traps only after a foreground child exits, and would
# never pass a hangup on when it leads the session itself). Ctrl-C and SIGTERM reach the driver
# as SIGTERM; a hangup (closed terminal, dropped SSH session) as SIGHUP, after which this
# script's own output goes to $GHA_HANGUP_LOG, since writes to a hung-up terminal fail. Returns
# the driver's exit status; the caller's EXIT trap then stops what the script started.
run_driver() {
    export GHA_HANGUP_LOG="${GHA_HANGUP_LOG:-$CARGO_TARGET_DIR/$(basename "$1")-hangup.log}"
    "$@" &
    GHA_DRIVER_PID=$!
    trap 'kill -TERM "$GHA_DRIVER_PID" 2>/dev/null || true' INT TERM
    trap 'exec </dev/null >>"$GHA_HANGUP_LOG" 2>&1; log "hangup: stopping the driver"; kill -HUP "$GHA_DRIVER_PID" 2>/dev/null || true' HUP
    local rc
    while :; do
        rc=0
        wait "$GHA_DRIVER_PID" || rc=$?
        # Above 128 with the driver still there: a signal ended the wait, not the driver.
        if [ "$rc" -gt 128 ] && kill -0 "$GHA_DRIVER_PID" 2>/dev/null; then
            continue
        fi
        return "$rc"
    done
}
