# test/lib/common.sh — shared by the atomix scripts: where Postgres lives,
# running things as the unprivileged `postgres` user, starting servers.
# Source it; it defines functions only.

PG_MAJOR=15
PG_BIN=/usr/lib/postgresql/$PG_MAJOR/bin
PGXS_TEST=/usr/lib/postgresql/$PG_MAJOR/lib/pgxs/src/test

# Debian packages everything (build, servers, tests, benchmarks) needs.
ATOMIX_PACKAGES="build-essential g++ make postgresql-$PG_MAJOR postgresql-server-dev-$PG_MAJOR \
postgresql-client-$PG_MAJOR libraft-dev libuv1-dev libcmocka-dev libipc-run-perl perl libpq-dev iproute2 procps"

die() { echo "error: $*" >&2; exit 1; }

# Installs whatever of ATOMIX_PACKAGES is missing (needs root).
ensure_packages() {
    local missing=""
    for p in $ATOMIX_PACKAGES; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing="$missing $p"
    done
    [ -z "$missing" ] && return 0
    [ "$(id -u)" = 0 ] || die "missing packages:$missing (run as root, or install them)"
    echo "== installing:$missing"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    # shellcheck disable=SC2086
    apt-get install -y -qq $missing >/dev/null
}

# Servers refuse to run as root: run as `postgres` when we are root.
as_pg() {
    if [ "$(id -u)" = 0 ]; then
        runuser -u postgres -- "$@"
    else
        "$@"
    fi
}

# A directory the server user owns.
make_pg_dir() {
    mkdir -p "$1"
    [ "$(id -u)" = 0 ] && chown postgres:postgres "$1"
    return 0
}

build_and_install() {
    local root=$1
    echo "== building and installing atomix"
    make -C "$root" -s -j2 >/dev/null || die "build failed"
    if [ "$(id -u)" = 0 ]; then
        make -C "$root" -s install >/dev/null || die "install failed"
    else
        sudo make -C "$root" -s install >/dev/null || die "install failed (needs root)"
    fi
}

# start_server DATADIR PORT [extra postgresql.conf lines...]
start_server() {
    local data=$1 port=$2
    shift 2
    make_pg_dir "$(dirname "$data")"
    if [ ! -f "$data/PG_VERSION" ]; then
        as_pg "$PG_BIN/initdb" -D "$data" -A trust -U postgres --no-sync >/dev/null || die "initdb failed"
        {
            echo "shared_preload_libraries = 'atomix'"
            echo "port = $port"
            echo "listen_addresses = '127.0.0.1'"
            echo "unix_socket_directories = '/tmp'"
            for line in "$@"; do echo "$line"; done
        } | as_pg tee -a "$data/postgresql.conf" >/dev/null
    fi
    as_pg "$PG_BIN/pg_ctl" -D "$data" -l "$data/server.log" -w -t 60 start >/dev/null \
        || { cat "$data/server.log" >&2; die "server in $data did not start"; }
}

stop_server() {
    local data=$1 mode=${2:-fast}
    [ -f "$data/postmaster.pid" ] && as_pg "$PG_BIN/pg_ctl" -D "$data" -m "$mode" -w stop >/dev/null
    return 0
}
