#!/usr/bin/env bash
# Installs the database servers that the test suites start for themselves: PostgreSQL (initdb, postgres) and
# Redis (redis-server, redis-cli), from the distribution's packages (Debian 12 / Ubuntu), as root.
#
#   bash tools/test-servers/install-servers.sh            # install what is missing
#   bash tools/test-servers/install-servers.sh --check    # only report what is missing (exit 1 if anything)
#
# Idempotent: installs only packages whose binaries are missing, runs `apt-get update` once and only then.
# The packages' system services are not started (a temporary policy-rc.d answers 101, "action forbidden"), and
# no default PostgreSQL cluster is created when postgresql-common is installed here for the first time, so
# nothing listens on 5432 or 6379: the tests start their own servers on free loopback ports.
set -euo pipefail

log() { echo "install-servers: $*" >&2; }

check_only=false
case "${1:-}" in
  '') ;;
  --check) check_only=true ;;
  *)
    log "unknown argument: $1 (use --check or no argument)"
    exit 2
    ;;
esac

# CI and `sudo` may run with a PATH that lacks the sbin directories.
export PATH="${PATH}:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

have() { command -v "$1" >/dev/null 2>&1; }

have_postgres() {
  local dir
  for dir in /usr/lib/postgresql/*/bin; do
    if [ -x "$dir/initdb" ] && [ -x "$dir/postgres" ]; then return 0; fi
  done
  have initdb && have postgres
}

missing_packages() {
  have redis-server || echo redis-server
  have redis-cli || echo redis-tools
  have_postgres || echo postgresql
}

mapfile -t packages < <(missing_packages)
if [ "${#packages[@]}" -eq 0 ]; then
  log "PostgreSQL and Redis are installed; nothing to do"
  exit 0
fi
log "missing: ${packages[*]}"
if $check_only; then exit 1; fi

if ! have apt-get; then
  log "no apt-get here: install PostgreSQL (initdb and postgres) and Redis (redis-server, redis-cli) with your"
  log "package manager, e.g. 'brew install postgresql@15 redis' on macOS"
  exit 1
fi
if [ "$(id -u)" -ne 0 ]; then
  log "installing packages needs root: sudo bash $0"
  exit 1
fi

export DEBIAN_FRONTEND=noninteractive
apt-get update -qq

# Prefer the PostgreSQL major the project tests against when the distribution has it.
for i in "${!packages[@]}"; do
  if [ "${packages[$i]}" = postgresql ] && apt-cache show postgresql-15 >/dev/null 2>&1; then
    packages[i]=postgresql-15
  fi
done

policy=/usr/sbin/policy-rc.d
if [ ! -e "$policy" ]; then
  printf '#!/bin/sh\n# Written by install-servers.sh while it installs packages.\nexit 101\n' >"$policy"
  chmod 755 "$policy"
  trap 'rm -f "$policy"' EXIT
fi

createcluster=/etc/postgresql-common/createcluster.conf
if [ ! -e "$createcluster" ]; then
  mkdir -p "$(dirname "$createcluster")"
  echo 'create_main_cluster = false' >"$createcluster"
fi

log "installing: ${packages[*]}"
apt-get install -y -qq --no-install-recommends \
  -o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold \
  "${packages[@]}"

mapfile -t still_missing < <(missing_packages)
if [ "${#still_missing[@]}" -ne 0 ]; then
  log "still missing after installation: ${still_missing[*]}"
  exit 1
fi
log "installed: $(redis-server --version | cut -d' ' -f1-3), PostgreSQL $(ls /usr/lib/postgresql 2>/dev/null | sort -n | tail -1)"
