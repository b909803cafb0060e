# $1 is 0 on erase, 1 on upgrade: only an erase removes the state database.
if [ "$1" = 0 ]; then
    rm -rf /var/lib/gha-dispatcher
fi
