# Fixtures the plugin needs on the test cluster: plugin arguments, a CVMFS-like image root,
# a stand-in runner, subordinate ids for rootless Docker. Sourced by ci/slurm-up.
# Owned by the spank-gha plugin work.

# The arguments after the plugin path in plugstack.conf (every key: plugstack.conf.example).
# docker=on-request: only jobs submitted with --gha-docker pay for a rootless dockerd.
# container_runtime=podman: Apptainer does not install from Debian; podman does.
# Tickets (--gha-runner=ticket:...) are redeemed at the one dispatcher of the cluster, which
# the tests and the demo start on GHA_DISPATCHER_PORT (e2e::DispatcherSlot serialises them).
plugin_args() {
    echo "workdir_base=/tmp runner_root=$GHA_CLUSTER_DIR/runner" \
        "image_root=$GHA_CLUSTER_DIR/cvmfs/unpacked.cern.ch container_runtime=podman" \
        "docker=on-request idle_timeout=30" \
        "stop_grace=3 docker_timeout=60 image_check_timeout=10" \
        "dispatcher_url=http://127.0.0.1:$GHA_DISPATCHER_PORT" \
        "redeem_helper=${GHA_REDEEM_HELPER:-$GHA_CLUSTER_DIR/libexec/gha-redeem}" \
        "munge_socket=$GHA_CLUSTER_DIR/munge/run/munge.socket redeem_timeout=20 dispatcher_uid=0"
}

# A directory laid out like /cvmfs/unpacked.cern.ch: <registry>/<image>:<tag>/ holding an
# unpacked root (busybox from Debian's busybox-static), plus the cases the image check must
# refuse or accept: a symlink out of the root, a file where a directory should be, and a
# relative alias that stays inside.
install_cvmfs_fixture() {
    local root=$GHA_CLUSTER_DIR/cvmfs/unpacked.cern.ch
    local image=$root/registry.example/gha/busybox:1
    mkdir -p "$image"/{bin,tmp,etc,work} "$root/registry.example/broken"
    install -m 0755 /bin/busybox "$image/bin/busybox"
    ln -sf busybox "$image/bin/sh"
    echo "gha-busybox-image" >"$image/etc/image-name"
    ln -sfn /etc "$root/registry.example/escape:1"
    ln -sfn gha/busybox:1 "$root/registry.example/alias:1"
    echo "not an image" >"$root/registry.example/broken/file:1"
    chmod -R a+rX "$GHA_CLUSTER_DIR/cvmfs"
}

# A stand-in for the actions runner (tests/fixtures/stand-in-runner), beside the real fake one.
install_stand_in_runner() {
    local dest=$GHA_CLUSTER_DIR/stand-in-runner
    rm -rf "$dest"
    cp -r "$REPO_ROOT/tests/fixtures/stand-in-runner" "$dest"
    chmod -R a+rX "$dest"
    # Until github-sim installs its fake runner, the stand-in is the cluster's runner.
    if [ ! -x "$GHA_CLUSTER_DIR/runner/run.sh" ]; then
        rm -rf "$GHA_CLUSTER_DIR/runner"
        cp -r "$dest" "$GHA_CLUSTER_DIR/runner"
    fi
}

# Rootless dockerd and podman map the job user's containers onto subordinate ids.
ensure_subids() {
    local f
    for f in /etc/subuid /etc/subgid; do
        touch "$f"
        grep -q "^$GHA_TEST_USER:" "$f" || echo "$GHA_TEST_USER:100000:65536" >>"$f"
        grep -q "^$GHA_TEST_USER_2:" "$f" || echo "$GHA_TEST_USER_2:165536:65536" >>"$f"
    done
}

# A fresh cluster numbers jobs from 1 again: work dirs a killed cluster could not clean would
# make its new jobs fail ("already exists"). They live in workdir_base=/tmp/spank-gha (plugin_args).
remove_stale_workdirs() {
    rm -rf /tmp/spank-gha
    find /tmp -maxdepth 1 -name 'gha-[0-9]*' -exec rm -rf {} + 2>/dev/null || true
}

install_plugin_fixtures() {
    remove_stale_workdirs
    install_cvmfs_fixture
    install_stand_in_runner
    ensure_subids
}
