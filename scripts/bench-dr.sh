#!/usr/bin/env bash
# DR benchmark: RTO of `aragora drill run` (restore, verify, ready, smoke debate) next to the bare
# tools on the same data, on SQLite and PostgreSQL. Usage: scripts/bench-dr.sh [MEGABYTES] [BINARY]
# (default 1024 MB and target/release/aragora). Generated data is debate-shaped: debates with 20
# events of ~1 KB each; no receipts (a drill verifies every receipt's signature, and these
# are not signed). Prints one Markdown table row per measurement.
set -euo pipefail
size_mb=${1:-1024}
bin=${2:-target/release/aragora}
bin=$(realpath "$bin")
pg=${ARAGORA_TEST_POSTGRES_URL:-postgres://postgres@127.0.0.1:5432/postgres}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
debates=$(( size_mb * 1024 / 21 ))   # ~21 KB per debate: 20 events of ~1 KB and the debate row

seconds() { echo "scale=2; ($(date +%s%N) - $1) / 1000000000" | bc; }
row() { printf '| %s | %s | %s |\n' "$1" "$2" "$3"; }

# The schema comes from the binary itself: start it once and stop it when ready.
migrate() {
  local dir=$1; shift
  env "$@" ARAGORA_DATA_DIR="$dir" ARAGORA_HOST=127.0.0.1 ARAGORA_PORT=0 ARAGORA_WS_PORT=0 \
    ARAGORA_LOG_LEVEL=error "$bin" serve > "$dir/serve.out" 2>&1 &
  local pid=$!
  until grep -q "listening" "$dir/serve.out" 2>/dev/null; do sleep 0.2; done
  local api; api=$(sed -n 's/.*api=\([^ ]*\).*/\1/p' "$dir/serve.out")
  until curl -fs "http://$api/readyz" > /dev/null; do sleep 0.2; done
  kill -TERM "$pid"; wait "$pid" || true
}

fill_sql() {  # $1: sqlite|postgres
  local blob=$([ "$1" = sqlite ] && echo "hex(randomblob(500))" || echo "repeat(md5(random()::text), 32)")
  local series_d=$([ "$1" = sqlite ] && echo "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < $debates)" || echo "WITH n(i) AS (SELECT generate_series(1, $debates))")
  local series_e=$([ "$1" = sqlite ] && echo "WITH RECURSIVE s(j) AS (SELECT 1 UNION ALL SELECT j + 1 FROM s WHERE j < 20)" || echo "WITH s(j) AS (SELECT generate_series(1, 20))")
  cat <<SQL
BEGIN;
$series_d
INSERT INTO debates (id, topic, status, rounds, agents, consensus_rule, seed, created_at_ms, started_at_ms, finished_at_ms, updated_at_ms, outcome, consensus_reached, final_answer, last_seq)
SELECT 'bench-' || i, 'benchmark topic ' || i, 'completed', 3, '["offline-a","offline-b"]', 'supermajority', i, 1700000000000 + i, 1700000000000 + i, 1700000000100 + i, 1700000000100 + i, 'consensus', 1, 'answer ' || i, 20 FROM n;
$series_e
INSERT INTO debate_events (debate_id, seq, kind, round, agent, data, created_at_ms)
SELECT d.id, s.j, 'agent_message', 1, 'offline-a', '{"text":"' || $blob || '"}', d.created_at_ms + s.j FROM debates d CROSS JOIN s;
COMMIT;
SQL
}

echo "| step | seconds | notes |"
echo "|---|---|---|"

# SQLite
dir=$work/sqlite; mkdir -p "$dir"
migrate "$dir"
fill_sql sqlite | sqlite3 "$dir/aragora.db"
db_mb=$(( $(stat -c %s "$dir/aragora.db") / 1048576 ))
t=$(date +%s%N); sqlite3 "$dir/aragora.db" ".backup $work/bare.db"; row "SQLite bare: sqlite3 .backup" "$(seconds $t)" "${db_mb} MB, $debates debates"
t=$(date +%s%N); sqlite3 "$work/bare.db" "PRAGMA integrity_check" > /dev/null; row "SQLite bare: integrity_check" "$(seconds $t)" ""
t=$(date +%s%N); ARAGORA_DATA_DIR=$dir "$bin" backup create > /dev/null; row "SQLite aragora backup create" "$(seconds $t)" "VACUUM INTO + zstd: $(du -m "$dir"/backups/*.zst | cut -f1) MB"
t=$(date +%s%N); report=$(ARAGORA_DATA_DIR=$dir "$bin" drill run --output json); row "SQLite aragora drill run (whole)" "$(seconds $t)" "status $(echo "$report" | jq -r .status)"
row "SQLite drill RTO (restore start to ready)" "$(echo "$report" | jq -r '.rto_seconds*100|round/100')" "sha256, zstd, integrity_check, counts, engine start"

# PostgreSQL
name=aragora_bench_$$
psql "$pg" -qc "CREATE DATABASE $name"
url="${pg%/*}/$name"
trap 'psql "$pg" -qc "DROP DATABASE IF EXISTS $name WITH (FORCE)"; psql "$pg" -qc "DROP DATABASE IF EXISTS ${name}_bare WITH (FORCE)"; rm -rf "$work"' EXIT
dir=$work/pg; mkdir -p "$dir"
migrate "$dir" ARAGORA_DB_BACKEND=postgres DATABASE_URL="$url"
fill_sql postgres | psql "$url" -q
pg_mb=$(psql "$url" -Atc "SELECT pg_database_size(current_database()) / 1048576")
t=$(date +%s%N); pg_dump -Fc -f "$work/bare.pgdump" "$url"; row "PostgreSQL bare: pg_dump -Fc" "$(seconds $t)" "${pg_mb} MB database"
psql "$pg" -qc "CREATE DATABASE ${name}_bare"
t=$(date +%s%N); pg_restore -j2 -d "${pg%/*}/${name}_bare" "$work/bare.pgdump"; row "PostgreSQL bare: pg_restore -j2" "$(seconds $t)" ""
t=$(date +%s%N); ARAGORA_DATA_DIR=$dir ARAGORA_DB_BACKEND=postgres DATABASE_URL=$url "$bin" backup create > /dev/null; row "PostgreSQL aragora backup create" "$(seconds $t)" "pg_dump in an exported snapshot"
t=$(date +%s%N); report=$(ARAGORA_DATA_DIR=$dir ARAGORA_DB_BACKEND=postgres DATABASE_URL=$url "$bin" drill run --output json); row "PostgreSQL aragora drill run (whole)" "$(seconds $t)" "status $(echo "$report" | jq -r .status)"
row "PostgreSQL drill RTO (restore start to ready)" "$(echo "$report" | jq -r '.rto_seconds*100|round/100')" "sha256, pg_restore -j2, counts, engine start"
