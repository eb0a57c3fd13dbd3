#!/usr/bin/env bash
# Makes sure the PostgreSQL and Redis the tests use answer on 127.0.0.1, starting the local
# ones if they are installed but stopped. Tests create their own databases and key prefixes.
set -euo pipefail

pg_url="${ARAGORA_TEST_POSTGRES_URL:-postgres://postgres@127.0.0.1:5432/postgres}"

pg_ready() { psql "$pg_url" -Atqc 'select 1' >/dev/null 2>&1; }

if ! pg_ready; then
  if command -v pg_ctlcluster >/dev/null 2>&1 && [ -d /etc/postgresql ]; then
    echo "services: starting PostgreSQL" >&2
    pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | head -n1)" main start || true
  fi
  for _ in $(seq 1 60); do pg_ready && break; sleep 0.5; done
  pg_ready || { echo "services: PostgreSQL does not answer at $pg_url; start it or set ARAGORA_TEST_POSTGRES_URL" >&2; exit 1; }
fi
