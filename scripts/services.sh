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

# Redis for the shared rate-limit tests (127.0.0.1:6379; each test uses its own key prefix).
redis_ready() {
  { exec 3<>/dev/tcp/127.0.0.1/6379; } 2>/dev/null || return 1
  printf 'PING\r\n' >&3
  local line=""
  read -r -t 2 line <&3 || true
  exec 3<&- 3>&-
  [[ "$line" == +PONG* ]]
}

if ! redis_ready; then
  if ! command -v redis-server >/dev/null 2>&1; then
    echo "services: installing redis-server" >&2
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server >/dev/null
  fi
  echo "services: starting Redis" >&2
  mkdir -p /var/lib/redis /var/log/redis
  redis-server --daemonize yes --bind 127.0.0.1 --port 6379 --save "" --appendonly no \
    --dir /var/lib/redis --logfile /var/log/redis/ci.log || true
  for _ in $(seq 1 60); do redis_ready && break; sleep 0.5; done
  redis_ready || { echo "services: Redis does not answer on 127.0.0.1:6379; start it and retry" >&2; exit 1; }
fi
