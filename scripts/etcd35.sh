#!/usr/bin/env bash
# Puts etcd 3.5.16 (etcd and etcdctl, from Debian 13 "trixie"'s etcd-server and etcd-client
# packages) into a folder of its own, leaving the system's apt configuration and packages as
# they are: Debian 12 ships etcd 3.4.23, which predates the fixes for watch progress
# (etcd#15220) and for slow watchers across compaction (etcd#17529), and is the slower reference.
#
#   scripts/etcd35.sh [FOLDER]     (default /tmp/etcd35; prints the folder holding the binaries)
#
# A second run finds the binaries and downloads nothing.
set -euo pipefail

folder="${1:-/tmp/etcd35}"
bin="$folder/root/usr/bin"
if [ -x "$bin/etcd" ] && [ -x "$bin/etcdctl" ]; then
    echo "$bin"
    exit 0
fi

# The Debian mirror this machine's apt is configured with.
mirror="$(grep -hsE '^URIs:' /etc/apt/sources.list.d/*.sources | awk '{print $2}' | grep -v security | head -n 1)"
if [ -z "$mirror" ]; then
    mirror="$(grep -hsE '^deb ' /etc/apt/sources.list | awk '{print $2}' | grep -v security | head -n 1)"
fi
if [ -z "$mirror" ]; then
    echo "etcd35.sh: no Debian mirror found in /etc/apt" >&2
    exit 1
fi

state="$folder/apt"
mkdir -p "$state/sources" "$state/lists/partial" "$state/cache/archives/partial" "$state/debs"
touch "$state/status"
cat >"$state/sources/trixie.sources" <<EOF
Types: deb
URIs: $mirror
Suites: trixie
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
EOF
# apt, but reading only this folder's sources, lists, cache and (empty) package status.
private_apt() {
    apt-get -q \
        -o Dir::Etc::SourceList=/dev/null -o Dir::Etc::SourceParts="$state/sources" \
        -o Dir::State::Lists="$state/lists" -o Dir::Cache="$state/cache" \
        -o Dir::State::status="$state/status" -o APT::Sandbox::User=root "$@"
}
private_apt update >/dev/null
(cd "$state/debs" && private_apt download etcd-server etcd-client >/dev/null)
for package in "$state"/debs/*.deb; do
    dpkg-deb -x "$package" "$folder/root"
done
"$bin/etcd" --version | head -n 1 >&2
echo "$bin"
