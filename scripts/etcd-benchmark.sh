#!/usr/bin/env bash
# Builds etcd's own benchmark tool (tools/benchmark of etcd's source, shipped in no binary
# package) from Debian's etcd source package, with Debian's Go and Debian's packaged Go
# libraries only: no module download, so it builds where only Debian's mirror is reachable.
#
#   scripts/etcd-benchmark.sh [FOLDER]   (default /tmp/etcd-benchmark; prints the binary's path)
#
# A second run finds the binary and builds nothing. It installs golang-go,
# golang-etcd-server-dev (the libraries the tool imports) and dpkg-dev with apt, and adds a
# deb-src entry for the mirror apt already uses when there is none.
set -euo pipefail

folder="${1:-/tmp/etcd-benchmark}"
binary="$folder/benchmark"
if [ -x "$binary" ]; then
    echo "$binary"
    exit 0
fi

export DEBIAN_FRONTEND=noninteractive
apt-get install -y -qq golang-go golang-etcd-server-dev dpkg-dev >/dev/null

# The Debian mirror and suite this machine's apt is configured with.
mirror="$(grep -hsE '^URIs:' /etc/apt/sources.list.d/*.sources | awk '{print $2}' | grep -v security | head -n 1)"
suite="$(grep -hsE '^Suites:' /etc/apt/sources.list.d/*.sources | awk '{print $2}' | head -n 1)"
if [ -z "$mirror" ]; then
    mirror="$(grep -hsE '^deb ' /etc/apt/sources.list | awk '{print $2}' | grep -v security | head -n 1)"
    suite="$(grep -hsE '^deb ' /etc/apt/sources.list | awk '{print $3}' | head -n 1)"
fi
if ! grep -rqs 'deb-src' /etc/apt/sources.list /etc/apt/sources.list.d/; then
    [ -n "$mirror" ] || { echo "etcd-benchmark.sh: no Debian mirror found in /etc/apt" >&2; exit 1; }
    printf 'Types: deb-src\nURIs: %s\nSuites: %s\nComponents: main\nSigned-By: /usr/share/keyrings/debian-archive-keyring.gpg\n' \
        "$mirror" "${suite:-bookworm}" >/etc/apt/sources.list.d/etcdshim-etcd-src.sources
    apt-get update -qq
fi

source="$folder/source"
gopath="$folder/gopath"
rm -rf "$source" "$gopath"
mkdir -p "$source" "$gopath/src/go.etcd.io/etcd/tools"
(cd "$source" && apt-get source -qq --download-only etcd >/dev/null 2>&1 && tar -xzf etcd_*.orig.tar.gz)
cp -r "$source"/etcd-*/tools/benchmark "$gopath/src/go.etcd.io/etcd/tools/"
# GOPATH mode against Debian's packaged libraries (/usr/share/gocode), with no proxy.
(cd "$gopath/src/go.etcd.io/etcd/tools/benchmark" &&
    GO111MODULE=off GOPATH="$gopath:/usr/share/gocode" GOPROXY=off GOFLAGS= \
        GOCACHE="$folder/gocache" go build -o "$binary" .)
echo "$binary"
