#!/usr/bin/env bash
# Makes sure Debian's PostgreSQL server binaries are installed, for the
# postgres-marked tests. Idempotent. It does NOT start the system cluster:
# the tests initdb and start a private throwaway cluster (tests/pg.py).
set -euo pipefail

if compgen -G "/usr/lib/postgresql/*/bin/initdb" > /dev/null; then
    echo "PostgreSQL binaries present: $(ls -d /usr/lib/postgresql/*/bin | tr '\n' ' ')"
    exit 0
fi

SUDO=""
if [ "$(id -u)" -ne 0 ]; then
    SUDO="sudo"
fi
export DEBIAN_FRONTEND=noninteractive
# policy-rc.d exit 101 stops the package from starting the system cluster;
# removed again whatever happens.
POLICY=/usr/sbin/policy-rc.d
if [ ! -e "$POLICY" ]; then
    printf '#!/bin/sh\nexit 101\n' | $SUDO tee "$POLICY" > /dev/null
    $SUDO chmod +x "$POLICY"
    trap '$SUDO rm -f "$POLICY"' EXIT
fi
$SUDO apt-get update
$SUDO apt-get install -y --no-install-recommends postgresql
echo "PostgreSQL binaries installed: $(ls -d /usr/lib/postgresql/*/bin | tr '\n' ' ')"
