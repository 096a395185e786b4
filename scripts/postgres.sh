# A throw-away PostgreSQL server on 127.0.0.1 for the tests (sourced by scripts/test.sh).
# Installs Debian's postgresql package when no server is on the machine. Exports
# ABLATE_TEST_POSTGRES, the URL the tests use, and for the password tests a second role that
# must give a password (scram-sha-256): ABLATE_TEST_POSTGRES_PW (a URL without the password)
# and ABLATE_TEST_PGPASSWORD (the password, for PGPASSWORD or ~/.pgpass).

_pg_bin() { ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1; }

start_postgres() {
    local bin
    bin=$(_pg_bin)
    if [ -z "$bin" ]; then
        echo "installing PostgreSQL (Debian package postgresql)..."
        apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null
        bin=$(_pg_bin)
    fi
    PG_DIR=$(mktemp -d /tmp/ablate-pg.XXXXXX)
    # a free port on loopback unless ABLATE_PG_PORT names one
    PG_PORT=${ABLATE_PG_PORT:-$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')}
    local as=()
    if [ "$(id -u)" = 0 ]; then  # the server refuses to run as root
        chown postgres "$PG_DIR"
        as=(runuser -u postgres --)
    fi
    (cd /tmp && "${as[@]}" "$bin/initdb" -D "$PG_DIR/data" -A trust -U ablate >/dev/null)
    # First match wins: the role ablate_pw must give its password; everyone else is trusted.
    local hba="$PG_DIR/data/pg_hba.conf"
    { echo "host all ablate_pw 127.0.0.1/32 scram-sha-256"; cat "$hba"; } > "$hba.new"
    "${as[@]}" cp "$hba.new" "$hba" && rm -f "$hba.new"
    (cd /tmp && "${as[@]}" "$bin/pg_ctl" -D "$PG_DIR/data" -l "$PG_DIR/log" -w \
        -o "-p $PG_PORT -k $PG_DIR -c listen_addresses=127.0.0.1 -c max_connections=200" start >/dev/null)
    "$bin/createdb" -h 127.0.0.1 -p "$PG_PORT" -U ablate ablate_test
    export ABLATE_TEST_POSTGRES="postgresql://ablate@127.0.0.1:$PG_PORT/ablate_test"
    ABLATE_TEST_PGPASSWORD=$(python3 -c 'import secrets; print(secrets.token_hex(8))')
    "$bin/psql" -q -h 127.0.0.1 -p "$PG_PORT" -U ablate -d ablate_test \
        -c "CREATE ROLE ablate_pw LOGIN PASSWORD '$ABLATE_TEST_PGPASSWORD'" >/dev/null
    "$bin/createdb" -h 127.0.0.1 -p "$PG_PORT" -U ablate -O ablate_pw ablate_pw_test
    export ABLATE_TEST_PGPASSWORD
    export ABLATE_TEST_POSTGRES_PW="postgresql://ablate_pw@127.0.0.1:$PG_PORT/ablate_pw_test"
    echo "PostgreSQL for the tests: $ABLATE_TEST_POSTGRES"
}

stop_postgres() {
    local bin
    bin=$(_pg_bin)
    [ -n "${PG_DIR:-}" ] || return 0
    local as=()
    [ "$(id -u)" = 0 ] && as=(runuser -u postgres --)
    (cd /tmp && "${as[@]}" "$bin/pg_ctl" -D "$PG_DIR/data" -m immediate stop >/dev/null 2>&1) || true
    rm -rf "$PG_DIR"
}
