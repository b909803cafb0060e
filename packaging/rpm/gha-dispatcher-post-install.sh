getent group gha-dispatcher >/dev/null || groupadd --system gha-dispatcher
getent passwd gha-dispatcher >/dev/null || useradd --system --gid gha-dispatcher \
    --home-dir /var/lib/gha-dispatcher --no-create-home --shell /sbin/nologin gha-dispatcher
install -d -m 0700 -o root -g root /var/lib/gha-dispatcher
