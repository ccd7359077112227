#!/usr/bin/env bash
# The one test command: starts a throw-away PostgreSQL cluster (so the PostgreSQL backend is
# tested for real, never skipped), then runs the whole workspace's tests against it.
# Extra arguments go to cargo, e.g. `./scripts/test.sh -p picket-store-postgres`.
set -euo pipefail

cd "$(dirname "$0")/.."

# ---- PostgreSQL binaries ----
find_pg_bin() {
    local d
    for d in /usr/lib/postgresql/*/bin; do
        if [[ -x "$d/initdb" && -x "$d/pg_ctl" ]]; then
            pg_bin="$d"
        fi
    done
}
pg_bin=""
find_pg_bin
if [[ -z "$pg_bin" ]]; then
    echo "test.sh: installing PostgreSQL (apt-get)..." >&2
    apt-get update
    DEBIAN_FRONTEND=noninteractive apt-get install -y postgresql
    find_pg_bin
fi
if [[ -z "$pg_bin" ]]; then
    echo "test.sh: no initdb/pg_ctl under /usr/lib/postgresql/*/bin after installing postgresql" >&2
    exit 1
fi

# ---- a throw-away cluster ----
pg_dir="$(mktemp -d -t picket-pg.XXXXXX)"
as_pg=()
if [[ "$(id -u)" == 0 ]]; then
    # initdb refuses to run as root: run the cluster as the postgres user.
    chown postgres: "$pg_dir"
    as_pg=(runuser -u postgres --)
fi

cleanup() {
    "${as_pg[@]}" "$pg_bin/pg_ctl" -D "$pg_dir/data" -m immediate stop >/dev/null 2>&1 || true
    rm -rf "$pg_dir"
}
trap cleanup EXIT

# A random high port nothing answers on (pg_ctl start is retried if another process wins it).
free_port() {
    local p
    while :; do
        p=$((20000 + RANDOM % 40000))
        if ! (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then
            echo "$p"
            return
        fi
    done
}

"${as_pg[@]}" "$pg_bin/initdb" -D "$pg_dir/data" -U postgres --auth=trust --encoding=UTF8 --locale=C >"$pg_dir/initdb.log" 2>&1 \
    || { cat "$pg_dir/initdb.log" >&2; exit 1; }

started=""
for _ in 1 2 3; do
    port="$(free_port)"
    if "${as_pg[@]}" "$pg_bin/pg_ctl" -D "$pg_dir/data" -l "$pg_dir/server.log" -w -t 30 \
        -o "-k $pg_dir -p $port -h 127.0.0.1 -c fsync=off -c synchronous_commit=off -c full_page_writes=off -c max_connections=300" \
        start >/dev/null; then
        started=1
        break
    fi
done
if [[ -z "$started" ]]; then
    echo "test.sh: PostgreSQL did not start; its log:" >&2
    cat "$pg_dir/server.log" >&2 || true
    exit 1
fi
export PICKET_TEST_DATABASE_URL="postgres://postgres@127.0.0.1:$port/postgres"
echo "test.sh: throw-away PostgreSQL on 127.0.0.1:$port" >&2

# ---- browser tests ----
# The portal's tests drive a real headless Chromium over WebDriver: install Debian's
# `chromium` and `chromium-driver` when missing, start chromedriver on a free port (stopped by
# the cleanup trap) and export its URL.
if [[ ! -x /usr/bin/chromium || ! -x /usr/bin/chromedriver ]]; then
    echo "test.sh: installing chromium and chromium-driver (apt-get)..." >&2
    apt-get update
    DEBIAN_FRONTEND=noninteractive apt-get install -y chromium chromium-driver
fi
chromedriver_pid=""
stop_chromedriver() {
    if [[ -n "$chromedriver_pid" ]]; then
        kill "$chromedriver_pid" 2>/dev/null || true
        wait "$chromedriver_pid" 2>/dev/null || true
    fi
}
trap 'stop_chromedriver; cleanup' EXIT
driver_port=""
for _ in 1 2 3; do
    driver_port="$(free_port)"
    /usr/bin/chromedriver --port="$driver_port" --allowed-ips=127.0.0.1 >"$pg_dir/chromedriver.log" 2>&1 &
    chromedriver_pid=$!
    for _ in $(seq 1 50); do
        if (exec 3<>"/dev/tcp/127.0.0.1/$driver_port") 2>/dev/null; then
            break 2
        fi
        if ! kill -0 "$chromedriver_pid" 2>/dev/null; then
            break
        fi
        sleep 0.1
    done
    stop_chromedriver
    chromedriver_pid=""
done
if [[ -z "$chromedriver_pid" ]]; then
    echo "test.sh: chromedriver did not start; its log:" >&2
    cat "$pg_dir/chromedriver.log" >&2 || true
    exit 1
fi
export PICKET_TEST_WEBDRIVER="http://127.0.0.1:$driver_port"
echo "test.sh: chromedriver on 127.0.0.1:$driver_port" >&2

# ---- the tests ----
# The whole workspace, unless the caller picked packages (`-p X` would otherwise be ignored).
# Every test binary runs even after one fails (a flaky failure must not hide the rest).
scope=(--workspace)
fail_fast=(--no-fail-fast)
for arg in "$@"; do
    case "$arg" in
        -p | -p* | --package | --package=*) scope=() ;;
        --no-fail-fast) fail_fast=() ;;
        --) break ;;
    esac
done
cargo test "${scope[@]}" "${fail_fast[@]}" --locked "$@"
