#!/usr/bin/env bash
# A PostgreSQL server on loopback for the store's PostgreSQL tests (no Docker here): installs
# Debian's postgresql when it is missing, starts its cluster, and makes the role the tests use
# (fdl_test, allowed to create and drop its own databases). Run as root; idempotent.
# The tests read FDL_TEST_PG_URL, and default to the URL printed on the last line.
set -euo pipefail

if ! ls /usr/lib/postgresql/*/bin/postgres >/dev/null 2>&1; then
  { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql; } >/tmp/fdl-postgres-install.log 2>&1 \
    || { echo "installing postgresql failed (see /tmp/fdl-postgres-install.log)" >&2; tail -5 /tmp/fdl-postgres-install.log >&2; exit 1; }
fi
# The first cluster Debian made (pg_lsclusters: version, name, port, status, ...).
read -r version name port status _ < <(pg_lsclusters --no-header | head -1) || { echo "no PostgreSQL cluster (pg_createcluster?)" >&2; exit 1; }
if [ "$status" != "online" ]; then pg_ctlcluster "$version" "$name" start; fi
su postgres -c "psql -q -p $port -v ON_ERROR_STOP=1" <<'SQL'
DO $$ BEGIN
  IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'fdl_test') THEN
    CREATE ROLE fdl_test LOGIN CREATEDB PASSWORD 'fdl_test';
  END IF;
END $$;
SQL
echo "postgres://fdl_test:fdl_test@127.0.0.1:${port}/postgres"
