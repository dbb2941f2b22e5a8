#!/usr/bin/env bash
# End-to-end comparison: direct PostgreSQL vs PgBouncer (session mode) vs pgward, one run,
# interleaved, on a throwaway cluster. Prints medians and the ratios pgward/direct and
# pgward/PgBouncer.
#
#   scripts/bench.sh                 # defaults: 3 rounds of 10 s per cell, 8 clients
#   ROUNDS=5 SECONDS_PER_RUN=20 CLIENTS=8 SCALE=10 scripts/bench.sh
#   ONLY=mask MASK_ROWS=1000000 scripts/bench.sh   # only the masking section
#   ONLY=hold HOLD=100 scripts/bench.sh            # only the held-sessions section
#   ONLY=audit scripts/bench.sh                     # only the audit section (off/batched/strict)
#   ONLY=connect scripts/bench.sh                   # only connect-per-transaction (pgbench -S -C;
#                                                     CONNECT_MODE=prepared for -M prepared)
#
# Needs: initdb/pg_ctl/pgbench (postgresql), pgbouncer, cargo. Installs nothing itself except
# when run with INSTALL=1 (apt-get).
set -euo pipefail

ROUNDS=${ROUNDS:-3}
SECS=${SECONDS_PER_RUN:-10}
CLIENTS=${CLIENTS:-8}
JOBS=${JOBS:-2}
SCALE=${SCALE:-10}
LAT_SECS=${LAT_SECONDS:-5}
MASK_ROWS=${MASK_ROWS:-1000000}
here=$(cd "$(dirname "$0")/.." && pwd)

if [ "${INSTALL:-0}" = 1 ]; then
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql pgbouncer >/dev/null
fi
bindir=$(pg_config --bindir 2>/dev/null || true)
[ -x "$bindir/initdb" ] || bindir=$(dirname "$(command -v initdb)")
command -v pgbouncer >/dev/null || { echo "pgbouncer not found (apt-get install pgbouncer, or INSTALL=1)"; exit 1; }
command -v pgbench >/dev/null || { echo "pgbench not found"; exit 1; }

echo "building pgward (release)…"
(cd "$here" && cargo build --release -q)
pgward="$here/target/release/pgward"

work=$(mktemp -d /tmp/pgward-bench-XXXXXX)
as_pg=()
if [ "$(id -u)" = 0 ]; then chown postgres: "$work"; as_pg=(runuser -u postgres --); fi
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
PGPORT_=$(free_port); BOUNCER_PORT=$(free_port); WARD_PORT=$(free_port)
PW=bench-pw
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  "${as_pg[@]}" "$bindir/pg_ctl" -D "$work/data" -m immediate stop >/dev/null 2>&1 || true
  rm -rf "$work"
}
trap cleanup EXIT

echo "$PW" > "$work/pw"; [ ${#as_pg[@]} -gt 0 ] && chown postgres: "$work/pw"
"${as_pg[@]}" "$bindir/initdb" -D "$work/data" -U bench --pwfile "$work/pw" --auth-host=scram-sha-256 \
  --auth-local=trust --no-locale -E UTF8 --no-sync >/dev/null
cat >> "$work/data/postgresql.conf" <<CONF
listen_addresses = '127.0.0.1'
port = $PGPORT_
unix_socket_directories = '$work'
max_connections = 300
shared_buffers = 256MB
fsync = off
synchronous_commit = off
CONF
"${as_pg[@]}" "$bindir/pg_ctl" -D "$work/data" -l "$work/pg.log" -w start >/dev/null
export PGPASSWORD=$PW
pgbench -q -i -s "$SCALE" -h 127.0.0.1 -p "$PGPORT_" -U bench postgres >/dev/null 2>&1
# A table with three columns the example rules mask for agents (ssn partial, email, phone redact).
psql -X -q -h 127.0.0.1 -p "$PGPORT_" -U bench postgres <<SQL
CREATE TABLE people (id int, name text, ssn text, email text, phone text, city text);
INSERT INTO people SELECT i, 'person ' || i, lpad((i % 1000)::text, 3, '0') || '-45-' || lpad((i % 10000)::text, 4, '0'),
  'user' || i || '@example.com', '+1 555 ' || lpad((i % 10000)::text, 4, '0'), 'city ' || (i % 100)
  FROM generate_series(1, $MASK_ROWS) i;
VACUUM ANALYZE people;
-- Agents' writes to orders need a DBA's approval under the example rules: held sessions.
CREATE TABLE orders (id int);
SQL

# PgBouncer, session mode, SCRAM to the client and the server.
cat > "$work/userlist.txt" <<U
"bench" "$PW"
U
cat > "$work/pgbouncer.ini" <<B
[databases]
postgres = host=127.0.0.1 port=$PGPORT_ dbname=postgres
[pgbouncer]
listen_addr = 127.0.0.1
listen_port = $BOUNCER_PORT
unix_socket_dir =
auth_type = scram-sha-256
auth_file = $work/userlist.txt
pool_mode = session
max_client_conn = 200
default_pool_size = 50
logfile = $work/pgbouncer.log
B
[ ${#as_pg[@]} -gt 0 ] && chown postgres: "$work"/*
"${as_pg[@]}" pgbouncer "$work/pgbouncer.ini" >/dev/null 2>&1 &
pids+=($!)

# pgward, SCRAM to the client and the server.
# The bench identity is an `agent` under the example rules: every statement is analyzed and
# decided (pgbench -S only reads).
echo "$PW" | "$pgward" passwd bench --roles agent > "$work/identities.toml"
# A DBA identity for write workloads (the audit section's TPC-B-like runs).
echo "$PW" | "$pgward" passwd writer --roles dba >> "$work/identities.toml"
cat > "$work/pgward.toml" <<W
listen = "127.0.0.1:$WARD_PORT"
identities = "identities.toml"
rules = "$here/rules"
[upstream]
host = "127.0.0.1"
port = $PGPORT_
user = "bench"
password_env = "PGWARD_BENCH_PW"
sslmode = "disable"
W
PGWARD_BENCH_PW=$PW RUST_LOG=warn "$pgward" serve --config "$work/pgward.toml" >"$work/pgward.log" 2>&1 &
ward_pid=$!
pids+=($ward_pid)

# Two more pgwards with the audit log on: batched (the default) and strict.
AUDIT_BATCHED_PORT=$(free_port); AUDIT_STRICT_PORT=$(free_port)
for mode in batched strict; do
  port_var=AUDIT_${mode^^}_PORT
  mkdir -p "$work/audit-$mode"
  sed -e "s/^listen = .*/listen = \"127.0.0.1:${!port_var}\"/" -e "s|^identities = .*|identities = \"$work/identities.toml\"|" \
    "$work/pgward.toml" > "$work/audit-$mode/pgward.toml"
  printf 'data_dir = "%s"\n' "$work/audit-$mode/data" | cat - "$work/audit-$mode/pgward.toml" > "$work/audit-$mode/t" \
    && mv "$work/audit-$mode/t" "$work/audit-$mode/pgward.toml"
  printf '[audit]\nmode = "%s"\n' "$mode" >> "$work/audit-$mode/pgward.toml"
  PGWARD_BENCH_PW=$PW RUST_LOG=warn "$pgward" serve --config "$work/audit-$mode/pgward.toml" >"$work/audit-$mode.log" 2>&1 &
  pids+=($!)
done

for port in $BOUNCER_PORT $WARD_PORT $AUDIT_BATCHED_PORT $AUDIT_STRICT_PORT; do
  for _ in $(seq 50); do psql -X -q -h 127.0.0.1 -p "$port" -U bench -d postgres -c 'select 1' >/dev/null 2>&1 && break; sleep 0.2; done
done

declare -A PORT=([direct]=$PGPORT_ [pgbouncer]=$BOUNCER_PORT [pgward]=$WARD_PORT)
targets=(direct pgbouncer pgward)
modes=(simple extended prepared)
declare -A TPS

tps_of() { sed -n 's/^tps = \([0-9.]*\) .*/\1/p' | head -1; }
# Runs pgbench and prints its TPS; on failure prints pgbench's last words to stderr and 0.
run_pgbench() {
  local out
  if out=$(pgbench "$@" 2>&1); then echo "$out" | tps_of; else echo "pgbench $*: $(echo "$out" | grep -m2 -i -E "error|fatal|abort")" >&2; echo 0; fi
}
median() { sort -g | awk '{a[NR]=$1} END {if (NR%2) print a[(NR+1)/2]; else print (a[NR/2]+a[NR/2+1])/2}'; }

if [ -z "${ONLY:-}" ] || [ "${ONLY:-}" = main ]; then
echo "pgbench -S: $CLIENTS clients, $JOBS threads, ${SECS}s per run, $ROUNDS rounds, interleaved"
for r in $(seq "$ROUNDS"); do
  for mode in "${modes[@]}"; do
    for t in "${targets[@]}"; do
      v=$(pgbench -n -S -M "$mode" -c "$CLIENTS" -j "$JOBS" -T "$SECS" -h 127.0.0.1 -p "${PORT[$t]}" -U bench postgres 2>&1 | tps_of)
      TPS[$mode,$t]="${TPS[$mode,$t]:-} $v"
      printf '  round %s %-9s %-10s %10.0f tps\n' "$r" "$mode" "$t" "$v"
    done
  done
done

# Single-connection SELECT 1 latency: per-transaction log, median in microseconds.
echo 'SELECT 1;' > "$work/select1.sql"
# Latency is the noisiest figure on shared machines: twice as many, shorter, interleaved rounds.
declare -A LAT
for r in $(seq $((ROUNDS * 2))); do
  for t in "${targets[@]}"; do
    rm -f "$work"/lat.*
    (cd "$work" && pgbench -n -M prepared -f select1.sql -c 1 -j 1 -T "$LAT_SECS" -l --log-prefix=lat \
      -h 127.0.0.1 -p "${PORT[$t]}" -U bench postgres >/dev/null 2>&1)
    m=$(cat "$work"/lat.* | awk '{print $3}' | median)
    LAT[$t]="${LAT[$t]:-} $m"
    printf '  round %s latency   %-10s %8.1f us\n' "$r" "$t" "$m"
  done
done

echo
printf '%-22s %12s %12s %12s %14s %16s\n' "median" direct pgbouncer pgward "pgward/direct" "pgward/pgbouncer"
for mode in "${modes[@]}"; do
  d=$(echo ${TPS[$mode,direct]} | tr ' ' '\n' | median)
  b=$(echo ${TPS[$mode,pgbouncer]} | tr ' ' '\n' | median)
  w=$(echo ${TPS[$mode,pgward]} | tr ' ' '\n' | median)
  printf '%-22s %12.0f %12.0f %12.0f %14.3f %16.3f\n' "TPS -S -M $mode" "$d" "$b" "$w" \
    "$(echo "$w / $d" | bc -l)" "$(echo "$w / $b" | bc -l)"
done
d=$(echo ${LAT[direct]} | tr ' ' '\n' | median)
b=$(echo ${LAT[pgbouncer]} | tr ' ' '\n' | median)
w=$(echo ${LAT[pgward]} | tr ' ' '\n' | median)
printf '%-22s %12.1f %12.1f %12.1f %14.3f %16.3f\n' "SELECT 1 latency (us)" "$d" "$b" "$w" \
  "$(echo "$w / $d" | bc -l)" "$(echo "$w / $b" | bc -l)"
printf 'pgward added latency at the median: %.1f us (PgBouncer: %.1f us)\n' \
  "$(echo "$w - $d" | bc -l)" "$(echo "$b - $d" | bc -l)"
fi

# Connection setup: pgbench -S -C opens a new connection for every transaction (authentication,
# startup, one SELECT, Terminate). pgward serves it from its session pool, PgBouncer from its own.
if [ -z "${ONLY:-}" ] || [ "${ONLY:-}" = connect ]; then
echo
echo "pgbench -S -C (a connection per transaction): $CLIENTS clients, ${SECS}s per run, $ROUNDS rounds, interleaved"
declare -A CONN
for r in $(seq "$ROUNDS"); do
  for t in "${targets[@]}"; do
    v=$(run_pgbench -n -S -C -M "${CONNECT_MODE:-simple}" -c "$CLIENTS" -j "$JOBS" -T "$SECS" -h 127.0.0.1 -p "${PORT[$t]}" -U bench postgres)
    CONN[$t]="${CONN[$t]:-} $v"
    printf '  round %s connect   %-10s %10.0f tps\n' "$r" "$t" "$v"
  done
done
d=$(echo ${CONN[direct]} | tr ' ' '\n' | median)
b=$(echo ${CONN[pgbouncer]} | tr ' ' '\n' | median)
w=$(echo ${CONN[pgward]} | tr ' ' '\n' | median)
printf '%-22s %12s %12s %12s %14s %16s\n' "median" direct pgbouncer pgward "pgward/direct" "pgward/pgbouncer"
printf '%-22s %12.0f %12.0f %12.0f %14.3f %16.3f\n' "TPS -S -C" "$d" "$b" "$w" \
  "$(echo "$w / $d" | bc -l)" "$(echo "$w / $b" | bc -l)"
fi
if [ "${ONLY:-}" = connect ]; then exit 0; fi

# The audit log: pgward without it, batched, and strict, on a read workload (pgbench -S, every
# statement recorded) and on pgbench's TPC-B-like writes (5 statements per transaction).
if [ -z "${ONLY:-}" ] || [ "${ONLY:-}" = audit ]; then
declare -A APORT=([off]=$WARD_PORT [batched]=$AUDIT_BATCHED_PORT [strict]=$AUDIT_STRICT_PORT)
declare -A ATPS
echo "audit log: $CLIENTS clients, ${SECS}s per run, $ROUNDS rounds, interleaved"
for r in $(seq "$ROUNDS"); do
  for load in select tpcb; do
    for a in off batched strict; do
      flags=(-S -U bench); [ $load = tpcb ] && flags=(-U writer)
      v=$(run_pgbench -n "${flags[@]}" -c "$CLIENTS" -j "$JOBS" -T "$SECS" -h 127.0.0.1 -p "${APORT[$a]}" postgres)
      ATPS[$load,$a]="${ATPS[$load,$a]:-} $v"
      printf '  round %s %-6s audit %-8s %10.0f tps\n' "$r" "$load" "$a" "$v"
    done
  done
done
printf '%-24s %12s %12s %12s %14s %14s\n' "median TPS" off batched strict "batched/off" "strict/off"
for load in select tpcb; do
  o=$(echo ${ATPS[$load,off]} | tr ' ' '\n' | median)
  b=$(echo ${ATPS[$load,batched]} | tr ' ' '\n' | median)
  st=$(echo ${ATPS[$load,strict]} | tr ' ' '\n' | median)
  label=$([ $load = select ] && echo "pgbench -S" || echo "pgbench (TPC-B-like)")
  printf '%-24s %12.0f %12.0f %12.0f %14.3f %14.3f\n' "$label" "$o" "$b" "$st" \
    "$(echo "$b / $o" | bc -l)" "$(echo "$st / $o" | bc -l)"
done
echo "audit records written: batched $(du -sh "$work/audit-batched/data/audit" | cut -f1), strict $(du -sh "$work/audit-strict/data/audit" | cut -f1)"
fi

if [ "${ONLY:-}" = audit ]; then exit 0; fi

# Held sessions: HOLD sessions each wait on an approval request (an agent's DELETE FROM orders)
# while pgbench runs beside them. A held session is a sleeping task: pgward's CPU while only
# they exist, and the TPS of the other sessions with and without them, show what they cost.
if [ "${ONLY:-}" = hold ] || [ "${HOLD:-0}" -gt 0 ]; then
HOLD=${HOLD:-100}
ticks() { awk '{print $14 + $15}' "/proc/$ward_pid/stat"; }
hz=$(getconf CLK_TCK)
declare -A HTPS
echo "held sessions: $HOLD held, pgbench -S -M prepared on pgward, $ROUNDS rounds"
for r in $(seq "$ROUNDS"); do
  v=$(pgbench -n -S -M prepared -c "$CLIENTS" -j "$JOBS" -T "$SECS" -h 127.0.0.1 -p "$WARD_PORT" -U bench postgres 2>&1 | tps_of)
  HTPS[free]="${HTPS[free]:-} $v"
  holders=()
  for i in $(seq "$HOLD"); do
    psql -X -q -h 127.0.0.1 -p "$WARD_PORT" -U bench postgres -c "DELETE FROM orders WHERE id = $i" >/dev/null 2>&1 &
    holders+=($!)
  done
  sleep 5
  alive=0; for h in "${holders[@]}"; do kill -0 "$h" 2>/dev/null && alive=$((alive + 1)); done
  t0=$(ticks); sleep 10; t1=$(ticks)
  idle_ms=$(( (t1 - t0) * 1000 / hz ))
  w=$(pgbench -n -S -M prepared -c "$CLIENTS" -j "$JOBS" -T "$SECS" -h 127.0.0.1 -p "$WARD_PORT" -U bench postgres 2>&1 | tps_of)
  HTPS[held]="${HTPS[held]:-} $w"
  HCPU="${HCPU:-} $idle_ms"
  printf '  round %s  %3d sessions held: pgward CPU %4d ms in 10 s idle; TPS %8.0f without, %8.0f with them\n' \
    "$r" "$alive" "$idle_ms" "$v" "$w"
  for h in "${holders[@]}"; do kill "$h" 2>/dev/null || true; done
  wait "${holders[@]}" 2>/dev/null || true
done
f=$(echo ${HTPS[free]} | tr ' ' '\n' | median)
h=$(echo ${HTPS[held]} | tr ' ' '\n' | median)
c=$(echo $HCPU | tr ' ' '\n' | median)
printf 'median: pgward CPU with %d held sessions and nothing else: %s ms per 10 s; TPS %.0f without, %.0f with (%.3f)\n' \
  "$HOLD" "$c" "$f" "$h" "$(echo "$h / $f" | bc -l)"
fi

if [ "${ONLY:-}" = hold ]; then exit 0; fi

# Masking: the whole people table streamed to one client, by SELECT * (pgbench discards the
# rows without formatting them) and by COPY TO STDOUT (psql writes them to /dev/null).
# Through pgward every row has 3 masked columns.
echo 'SELECT * FROM people;' > "$work/select_all.sql"
bytes=$(psql -X -A -t -h 127.0.0.1 -p "$PGPORT_" -U bench postgres -c "SELECT pg_total_relation_size('people')")
declare -A SEL CPY
mask_targets=(direct pgbouncer pgward)
echo "masking: $MASK_ROWS rows, $ROUNDS rounds, interleaved"
for r in $(seq "$ROUNDS"); do
  for t in "${mask_targets[@]}"; do
    v=$(pgbench -n -f "$work/select_all.sql" -c 1 -j 1 -t 3 -h 127.0.0.1 -p "${PORT[$t]}" -U bench postgres 2>&1 | tps_of)
    rows=$(echo "$v * $MASK_ROWS" | bc -l)
    SEL[$t]="${SEL[$t]:-} $rows"
    start=$(date +%s.%N)
    psql -X -q -h 127.0.0.1 -p "${PORT[$t]}" -U bench postgres -c 'COPY people TO STDOUT' >/dev/null
    end=$(date +%s.%N)
    rows=$(echo "$MASK_ROWS / ($end - $start)" | bc -l)
    CPY[$t]="${CPY[$t]:-} $rows"
    printf '  round %s %-10s SELECT * %10.0f rows/s   COPY %10.0f rows/s\n' "$r" "$t" "${SEL[$t]##* }" "$rows"
  done
done
# One sample of what the agent sees, to show the columns really are masked.
echo "sample row through pgward: $(psql -X -A -t -h 127.0.0.1 -p "$WARD_PORT" -U bench postgres -c 'SELECT * FROM people WHERE id = 42')"
echo
printf '%-26s %12s %12s %12s %14s\n' "median rows/s ($((bytes / 1048576)) MiB)" direct pgbouncer pgward "pgward/direct"
for kind in SEL CPY; do
  declare -n m=$kind
  d=$(echo ${m[direct]} | tr ' ' '\n' | median)
  b=$(echo ${m[pgbouncer]} | tr ' ' '\n' | median)
  w=$(echo ${m[pgward]} | tr ' ' '\n' | median)
  label=$([ $kind = SEL ] && echo "SELECT * (3 masked)" || echo "COPY TO STDOUT (3 masked)")
  printf '%-26s %12.0f %12.0f %12.0f %14.3f\n' "$label" "$d" "$b" "$w" "$(echo "$w / $d" | bc -l)"
done
