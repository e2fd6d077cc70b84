#!/usr/bin/env bash
# Makes sure a PostgreSQL server answers on 127.0.0.1:5432, installing and starting Debian's
# package when it is absent, as on a fresh machine. Prints what it did; never fails the build
# on its own: tests that need PostgreSQL say so and why when it is not there.
set -u
# Tests connect as postgres/postgres over TCP. A machine that trusts loopback ignores the
# password; a fresh Debian install asks for one, so set it (as the postgres OS user, over the
# local socket, which Debian lets it use).
ensure_login() {
  if PGPASSWORD=postgres psql -h 127.0.0.1 -U postgres -d postgres -c 'select 1' >/dev/null 2>&1; then
    return
  fi
  su postgres -c "psql -q -c \"ALTER USER postgres PASSWORD 'postgres'\"" >/dev/null 2>&1 \
    && echo "postgres: password set for user postgres" \
    || echo "postgres: could not set a password for user postgres"
}

if pg_isready -h 127.0.0.1 -p 5432 -q 2>/dev/null; then
  echo "postgres: running"
  ensure_login
  exit 0
fi
if ! ls /etc/postgresql 2>/dev/null | grep -q .; then
  echo "postgres: not installed, installing from Debian packages"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -q >/dev/null && apt-get install -y -q postgresql >/dev/null || { echo "postgres: install failed"; exit 0; }
fi
version=$(ls /etc/postgresql | sort -V | tail -n 1)
pg_ctlcluster --skip-systemctl-redirect "$version" main start 2>/dev/null || true
for _ in $(seq 1 30); do
  pg_isready -h 127.0.0.1 -p 5432 -q && { echo "postgres: started ($version)"; break; }
  sleep 1
done
ensure_login
exit 0
