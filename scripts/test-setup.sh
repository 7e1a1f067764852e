#!/usr/bin/env bash
# Installs what the test suite needs, when it is missing: Debian's protobuf-compiler (the
# etcd-client test dependency compiles etcd's protos with protoc), etcd-server and etcd-client
# (etcd 3.4.23 and etcdctl, the references the tests compare against), postgresql (initdb and
# pg_ctl, for the tests that stop a private PostgreSQL), mariadb-server (mariadb-install-db and
# mariadbd, likewise), e2fsprogs, mount and util-linux (the disk fault tests) and procps; Python's grpcio (a client that sends a
# percent-encoded :authority); and etcd 3.5.16 (scripts/etcd35.sh, into /tmp/etcd35).
set -euo pipefail
cd "$(dirname "$0")/.."

missing=()
command -v protoc >/dev/null || missing+=(protobuf-compiler)
command -v etcd >/dev/null || missing+=(etcd-server)
command -v etcdctl >/dev/null || missing+=(etcd-client)
ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || missing+=(postgresql)
# The disk fault tests format and check an ext4 image; the outage tests run a private MariaDB.
command -v mkfs.ext4 >/dev/null || missing+=(e2fsprogs)
# mount, umount, findmnt, runuser (the private PostgreSQL) and /usr/bin/kill (SIGTERM to the
# private MariaDB): in every Debian install, but a minimal image may lack them.
command -v findmnt >/dev/null || missing+=(util-linux)
command -v mount >/dev/null || missing+=(mount)
[ -x /usr/bin/kill ] || [ -x /bin/kill ] || missing+=(procps)
command -v mariadb-install-db >/dev/null || missing+=(mariadb-server)
if [ ${#missing[@]} -gt 0 ]; then
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}"
fi
python3 -c 'import grpc' 2>/dev/null || python3 -m pip install -q grpcio
scripts/etcd35.sh /tmp/etcd35 >/dev/null
