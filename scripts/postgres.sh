#!/usr/bin/env bash
# A throwaway PostgreSQL server on loopback, from Debian's package, for the
# tests of the PostgreSQL store (src/postgres/): a real server with SCRAM
# passwords and TLS, in a folder of the caller's, that nothing else shares.
# The package's own cluster (main, on port 5432, if apt set one up) is
# neither used nor touched.
#
# usage:
#   scripts/postgres.sh start DIR
#       Installs the Debian package postgresql when no initdb is found under
#       /usr/lib/postgresql/*/bin (and openssl when /usr/bin/openssl is
#       missing; the package lists are updated first only then), and starts
#       a server of the highest version there with everything in DIR (a
#       fresh folder, created when missing; as root it is handed to the user
#       postgres, since initdb and the server refuse to run as root):
#         DIR/data                  the cluster (initdb: UTF8, locale C,
#                                   scram-sha-256 for every connection)
#         DIR/postgres.log          the server's log
#         DIR/.s.PGSQL.PORT         its Unix socket (no TCP but 127.0.0.1)
#         DIR/data/server.{crt,key} a certificate for 127.0.0.1 (ssl = on)
#                                   from a throwaway authority, DIR/ca.pem
#                                   (ca.key beside it), for clients to
#                                   trust (sslrootcert)
#         DIR/superuser-password    the password of the superuser postgres
#         DIR/wren-password         the password of the role wren, owner of
#                                   the database wren
#         DIR/url                   postgres://wren:PASSWORD@127.0.0.1:PORT/wren
#       The port is a free one picked at random in 20000-32767 (below the
#       kernel's ephemeral ports). Prints the URL, alone, on stdout;
#       everything else goes to stderr. On a DIR whose server is already
#       running it only prints the URL again; on one whose server was
#       stopped it starts it again (on another port if its own was taken).
#   scripts/postgres.sh stop DIR
#       Stops the server in DIR (pg_ctl stop -m fast). Nothing to do, and no
#       error, when it is not running or DIR does not exist. DIR itself is
#       the caller's to remove.
#
# Run as root (then the cluster belongs to the user postgres) or as the
# user who owns DIR.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)

usage() {
  echo "usage: scripts/postgres.sh start|stop DIR" >&2
  exit 2
}

# libpq's environment must not redirect the connections made here.
unset PGHOST PGHOSTADDR PGPORT PGDATABASE PGUSER PGPASSWORD PGPASSFILE \
  PGSERVICE PGSERVICEFILE PGSSLMODE PGSSLROOTCERT PGOPTIONS PGDATA

# The bin folder of the highest PostgreSQL version installed, or nothing.
highest_bindir() {
  local initdb
  initdb=$(printf '%s\n' /usr/lib/postgresql/*/bin/initdb | sort -V | tail -n 1)
  if [[ -x $initdb ]]; then dirname "$initdb"; fi
  return 0
}

# Runs a command as the owner of the cluster: as root through runuser,
# otherwise directly (the caller owns DIR).
as_owner() {
  if [[ $(id -u) -eq 0 ]]; then
    runuser -u "$owner" -- "$@"
  else
    "$@"
  fi
}

random_hex() { od -An -tx1 -N16 /dev/urandom | tr -d ' \n'; }

# True when something accepts connections on 127.0.0.1:$1.
port_taken() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

pick_port() {
  local port
  while :; do
    port=$((20000 + RANDOM % 12768))
    if ! port_taken "$port"; then
      echo "$port"
      return
    fi
  done
}

# Writes a file of DIR's readable only by its owner.
write_secret() {
  (umask 077 && printf '%s\n' "$2" >"$1")
}

# initdb in DIR/data, with the settings and the certificate.
init_cluster() {
  local su_password
  su_password=$(random_hex)
  write_secret "$dir/superuser-password" "$su_password"
  if [[ $(id -u) -eq 0 ]]; then chown "$owner:" "$dir/superuser-password"; fi
  echo "postgres.sh: initdb in $dir/data ($bindir)" >&2
  as_owner "$bindir/initdb" --pgdata="$dir/data" --username=postgres \
    --pwfile="$dir/superuser-password" --auth=scram-sha-256 \
    --encoding=UTF8 --locale=C >&2

  # A certificate for 127.0.0.1 from a throwaway authority, DIR/ca.pem, the
  # one a client trusts (sslrootcert; sslmode=verify-full works with it).
  # An authority and a leaf, not one self-signed certificate: rustls, like
  # every WebPKI verifier, refuses an authority's certificate as a server's.
  (
    umask 077
    openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes \
      -days 1 -subj "/CN=wren test authority" \
      -keyout "$dir/ca.key" -out "$dir/ca.pem" 2>&1
    openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes \
      -subj /CN=127.0.0.1 -keyout "$dir/data/server.key" -out "$dir/server.csr" 2>&1
    printf '%s\n' 'basicConstraints=critical,CA:FALSE' 'subjectAltName=IP:127.0.0.1' \
      'keyUsage=critical,digitalSignature' 'extendedKeyUsage=serverAuth' >"$dir/server.ext"
    openssl x509 -req -in "$dir/server.csr" -CA "$dir/ca.pem" -CAkey "$dir/ca.key" \
      -CAcreateserial -days 1 -extfile "$dir/server.ext" -out "$dir/data/server.crt" 2>&1
    rm -f "$dir/server.csr" "$dir/server.ext" "$dir/ca.srl"
  ) >&2
  if [[ $(id -u) -eq 0 ]]; then
    chown "$owner:" "$dir/data/server.key" "$dir/data/server.crt"
  fi
  chmod 0600 "$dir/data/server.key" "$dir/data/server.crt"
  chmod 0644 "$dir/ca.pem"

  # fsync stays on (the default): the store's tests may kill the server.
  # The port line is rewritten when a start has to move to another port.
  as_owner tee -a "$dir/data/postgresql.conf" >/dev/null <<EOF

# scripts/postgres.sh
listen_addresses = '127.0.0.1'
port = $(pick_port)
unix_socket_directories = '$dir'
unix_socket_permissions = 0700
password_encryption = 'scram-sha-256'
ssl = on
ssl_cert_file = 'server.crt'
ssl_key_file = 'server.key'
EOF
}

configured_port() {
  sed -n 's/^port = \([0-9]*\).*/\1/p' "$dir/data/postgresql.conf" | tail -n 1
}

set_port() {
  as_owner sed -i "s/^port = [0-9]*/port = $1/" "$dir/data/postgresql.conf"
}

# pg_ctl start, on another port when the configured one is taken. Sets
# $port.
start_server() {
  local attempt log_size
  for attempt in 1 2 3 4 5; do
    port=$(configured_port)
    if port_taken "$port"; then
      port=$(pick_port)
      set_port "$port"
    fi
    log_size=0
    if [[ -f $dir/postgres.log ]]; then log_size=$(stat -c %s "$dir/postgres.log"); fi
    echo "postgres.sh: starting the server on 127.0.0.1:$port" >&2
    # 3>&-: the server must not inherit the descriptor the URL goes out
    # on, or a caller's $(scripts/postgres.sh start DIR) waits for it to exit.
    if as_owner "$bindir/pg_ctl" start --pgdata="$dir/data" --log="$dir/postgres.log" \
      --wait --timeout=60 >&2 3>&-; then
      return 0
    fi
    if tail -c +"$((log_size + 1))" "$dir/postgres.log" 2>/dev/null |
      grep -q 'Address already in use'; then
      echo "postgres.sh: port $port was taken (attempt $attempt), trying another" >&2
      set_port "$(pick_port)"
      continue
    fi
    break
  done
  echo "postgres.sh: the server did not start; the end of $dir/postgres.log:" >&2
  tail -n 30 "$dir/postgres.log" >&2 || true
  exit 1
}

wait_ready() {
  local _
  for _ in $(seq 1 60); do
    if "$bindir/pg_isready" --quiet --host=127.0.0.1 --port="$port" --timeout=1; then
      return 0
    fi
    sleep 0.5
  done
  echo "postgres.sh: no connections accepted on 127.0.0.1:$port in 30 s; the end of $dir/postgres.log:" >&2
  tail -n 30 "$dir/postgres.log" >&2 || true
  exit 1
}

# As the superuser over the Unix socket in DIR.
superuser_psql() {
  PGPASSWORD=$(cat "$dir/superuser-password") \
    "$bindir/psql" --no-psqlrc --quiet --no-align --tuples-only \
    --set=ON_ERROR_STOP=1 --host="$dir" --port="$port" \
    --username=postgres --dbname=postgres "$@"
}

# The role wren (SCRAM password) and its database wren, unless they exist.
create_role_and_database() {
  if [[ ! -s $dir/wren-password ]]; then
    write_secret "$dir/wren-password" "$(random_hex)"
  fi
  if [[ -z $(superuser_psql --command="SELECT 1 FROM pg_roles WHERE rolname = 'wren'") ]]; then
    # Hex, so quoting is safe; on stdin, so it is never on a command line.
    superuser_psql <<SQL
CREATE ROLE wren LOGIN CREATEDB PASSWORD '$(cat "$dir/wren-password")';
SQL
  fi
  if [[ -z $(superuser_psql --command="SELECT 1 FROM pg_database WHERE datname = 'wren'") ]]; then
    superuser_psql --command='CREATE DATABASE wren OWNER wren'
  fi
}

start() {
  dir=$1
  # stdout is for the URL alone.
  exec 3>&1 1>&2

  bindir=$(highest_bindir)
  if [[ -z $bindir ]]; then
    # apt-install.sh installs when its first argument is not an executable
    # file, as this pattern never is.
    "$here/apt-install.sh" '/usr/lib/postgresql/*/bin/initdb' postgresql
    bindir=$(highest_bindir)
    if [[ -z $bindir ]]; then
      echo "postgres.sh: no initdb under /usr/lib/postgresql/*/bin after installing postgresql" >&2
      exit 1
    fi
  fi
  "$here/apt-install.sh" /usr/bin/openssl openssl

  mkdir -p "$dir"
  dir=$(cd "$dir" && pwd)
  # The socket's path, DIR/.s.PGSQL.PORT, must fit in 107 bytes.
  if ((${#dir} + 18 > 107)); then
    echo "postgres.sh: $dir is too long a path for the server's Unix socket; use a shorter one (e.g. mktemp -d)" >&2
    exit 1
  fi
  if [[ $(id -u) -eq 0 ]]; then
    owner=postgres
    if [[ -f $dir/data/PG_VERSION ]]; then owner=$(stat -c %U "$dir/data"); fi
    chown "$owner:" "$dir"
    chmod 0700 "$dir"
    if ! runuser -u "$owner" -- test -w "$dir"; then
      echo "postgres.sh: the user $owner cannot reach $dir (a parent folder is closed to it); use one under /tmp" >&2
      exit 1
    fi
  fi
  # The commands run as postgres start here, where that user can be.
  cd "$dir"

  if [[ -f $dir/data/PG_VERSION ]]; then
    # A cluster made before: its own version's binaries.
    bindir=/usr/lib/postgresql/$(cat "$dir/data/PG_VERSION")/bin
  else
    init_cluster
  fi

  if as_owner "$bindir/pg_ctl" status --pgdata="$dir/data" >/dev/null; then
    port=$(configured_port)
    echo "postgres.sh: the server in $dir is already running" >&2
  else
    start_server
  fi
  wait_ready
  create_role_and_database

  local url
  url="postgres://wren:$(cat "$dir/wren-password")@127.0.0.1:$port/wren"
  write_secret "$dir/url" "$url"
  echo "postgres.sh: PostgreSQL $(cat "$dir/data/PG_VERSION") at 127.0.0.1:$port (log: $dir/postgres.log)" >&2
  echo "$url" >&3
}

stop() {
  dir=$1
  exec 1>&2
  if [[ ! -f $dir/data/PG_VERSION ]]; then
    echo "postgres.sh: no cluster in $dir, nothing to stop" >&2
    return 0
  fi
  dir=$(cd "$dir" && pwd)
  bindir=/usr/lib/postgresql/$(cat "$dir/data/PG_VERSION")/bin
  if [[ ! -x $bindir/pg_ctl ]]; then
    echo "postgres.sh: $bindir/pg_ctl is gone, so nothing of $dir can be running" >&2
    return 0
  fi
  owner=$(stat -c %U "$dir/data")
  cd "$dir"
  # pg_ctl status: 0 running, 3 not running (a stale postmaster.pid too).
  if ! as_owner "$bindir/pg_ctl" status --pgdata="$dir/data" >/dev/null; then
    echo "postgres.sh: the server in $dir is not running" >&2
    return 0
  fi
  as_owner "$bindir/pg_ctl" stop --pgdata="$dir/data" --mode=fast --wait --timeout=60 >&2
}

owner=
if [[ $# -ne 2 || -z $2 ]]; then usage; fi
case $1 in
  start) start "$2" ;;
  stop) stop "$2" ;;
  *) usage ;;
esac
