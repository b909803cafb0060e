#!/bin/bash
# Fake actions runner entry point, laid out like the real one: resolves its own directory
# (following symlinks) and runs bin/Runner.Listener. exec hands the process to the listener, so
# signals (SIGINT, SIGTERM) reach it directly, as with RUNNER_MANUALLY_TRAP_SIG=1 in the real run.sh.
SOURCE="${BASH_SOURCE[0]}"
while [ -h "$SOURCE" ]; do
    DIR="$(cd -P "$(dirname "$SOURCE")" >/dev/null 2>&1 && pwd)"
    SOURCE="$(readlink "$SOURCE")"
    [[ $SOURCE != /* ]] && SOURCE="$DIR/$SOURCE"
done
DIR="$(cd -P "$(dirname "$SOURCE")" >/dev/null 2>&1 && pwd)"
exec "$DIR/bin/Runner.Listener" run "$@"
