# Fixtures the plugin needs on the test cluster: plugin arguments, a CVMFS-like image root,
# the runner install, subordinate ids for rootless Docker. Sourced by ci/slurm-up.
# Owned by the spank-gha plugin work.

# The arguments after the plugin path in plugstack.conf.
plugin_args() {
    echo "workdir_base=/tmp runner_root=$GHA_CLUSTER_DIR/runner image_root=$GHA_CLUSTER_DIR/cvmfs/unpacked.cern.ch docker=off idle_timeout=30"
}

install_plugin_fixtures() {
    :
}
