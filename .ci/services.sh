#!/usr/bin/env bash
# Installs the server binaries the tests start themselves (redis-server, PostgreSQL, Alertmanager) and promtool
# (Debian's prometheus package) on Debian 12.
# Run as root; idempotent. It does not start servers: each test starts its own on a free 127.0.0.1 port. It stops
# the system services Debian starts on install, so they do not hold the default ports or use CPU.
set -euo pipefail

if [ "$(id -u)" -ne 0 ]; then
    echo "services.sh: run as root (apt-get and service control need it)" >&2
    exit 1
fi

export DEBIAN_FRONTEND=noninteractive

missing=()
command -v redis-server >/dev/null 2>&1 || [ -x /usr/bin/redis-server ] || missing+=(redis-server)
compgen -G '/usr/lib/postgresql/*/bin/initdb' >/dev/null || missing+=(postgresql)
command -v prometheus-alertmanager >/dev/null 2>&1 || [ -x /usr/bin/prometheus-alertmanager ] \
    || missing+=(prometheus-alertmanager)
# promtool (from Debian's prometheus package) checks the analyzer's /metrics exposition and the rules files.
command -v promtool >/dev/null 2>&1 || missing+=(prometheus)
# Debian's Chromium: Playwright drives it for the analyzer page's browser tests (tests/e2e/test_page.py).
[ -x /usr/bin/chromium ] || missing+=(chromium)

if [ "${#missing[@]}" -gt 0 ]; then
    echo "services.sh: installing ${missing[*]}"
    apt-get update -qq
    # policy-rc.d keeps Debian's postinst scripts from starting the services on machines with an init system.
    policy=/usr/sbin/policy-rc.d
    created_policy=0
    if [ ! -e "$policy" ]; then
        printf '#!/bin/sh\nexit 101\n' >"$policy"
        chmod +x "$policy"
        created_policy=1
    fi
    apt-get install -y --no-install-recommends "${missing[@]}"
    if [ "$created_policy" -eq 1 ]; then
        rm -f "$policy"
    fi
else
    echo "services.sh: redis-server, postgresql, prometheus-alertmanager, promtool and chromium already installed"
fi

# The `postgres` system user must exist: tests run initdb/postgres as it when they are root.
id postgres >/dev/null 2>&1 || { echo "services.sh: user 'postgres' missing after install" >&2; exit 1; }

stop_service() {
    local unit="$1"
    if command -v systemctl >/dev/null 2>&1 && [ -d /run/systemd/system ]; then
        systemctl stop "$unit" >/dev/null 2>&1 || true
        systemctl disable "$unit" >/dev/null 2>&1 || true
    elif command -v service >/dev/null 2>&1; then
        service "$unit" stop >/dev/null 2>&1 || true
    fi
}

for unit in redis-server postgresql prometheus-alertmanager prometheus; do
    stop_service "$unit"
done

# Without an init system (containers) nothing above applies, but a daemon may still have been started by hand:
# stop the ones on the default ports by their pid files / exact command names, never a broad pattern.
if [ -r /run/redis/redis-server.pid ]; then
    kill "$(cat /run/redis/redis-server.pid)" 2>/dev/null || true
fi
for pidfile in /var/lib/postgresql/*/main/postmaster.pid /run/postgresql/*.pid; do
    [ -r "$pidfile" ] && kill -INT "$(head -n1 "$pidfile")" 2>/dev/null || true
done

echo "services.sh: ready (tests start their own servers)"
