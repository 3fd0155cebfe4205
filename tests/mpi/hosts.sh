#!/usr/bin/env bash
# Test hosts for the multi-host MPI test: network namespaces on this
# machine, joined by a bridge that lives in a namespace of its own, so that
# no traffic leaves the machine and the root namespace is not touched.
#
#   tests/mpi/hosts.sh up PREFIX N    makes PREFIX-h1..PREFIX-hN (10.77.X.i/24)
#   tests/mpi/hosts.sh down PREFIX    removes them
#   tests/mpi/hosts.sh run HOST CMD...  runs CMD on HOST (its own hostname)
#
# Each host gets an /etc/netns/HOST/hosts naming every host, and a UTS
# namespace with its name as hostname when a command runs there (Open MPI
# tells nodes apart by hostname). Needs root, iproute2 and util-linux.
set -euo pipefail

cmd=${1:?usage: hosts.sh up PREFIX N | down PREFIX | run HOST CMD...}
shift

subnet_of() {
    # One /24 per prefix, from a hash of it, so that two test runs at once
    # do not share addresses (they do not share a bridge either).
    local sum
    sum=$(printf '%s' "$1" | cksum | cut -d' ' -f1)
    echo "10.77.$((sum % 250 + 1))"
}

case "$cmd" in
up)
    prefix=${1:?prefix}; n=${2:?number of hosts}
    net=$(subnet_of "$prefix")
    br="$prefix-br"
    ip netns add "$br"
    ip -n "$br" link add br0 type bridge
    ip -n "$br" link set br0 up
    hosts_file=$(mktemp)
    for i in $(seq 1 "$n"); do echo "$net.$i $prefix-h$i" >> "$hosts_file"; done
    for i in $(seq 1 "$n"); do
        h="$prefix-h$i"
        ip netns add "$h"
        ip link add "v$i-$prefix" type veth peer name "b$i-$prefix"
        ip link set "v$i-$prefix" netns "$h"
        ip link set "b$i-$prefix" netns "$br"
        ip -n "$br" link set "b$i-$prefix" master br0
        ip -n "$br" link set "b$i-$prefix" up
        ip -n "$h" link set lo up
        ip -n "$h" link set "v$i-$prefix" name eth0
        ip -n "$h" addr add "$net.$i/24" dev eth0
        ip -n "$h" link set eth0 up
        mkdir -p "/etc/netns/$h"
        { echo "127.0.0.1 localhost"; cat "$hosts_file"; } > "/etc/netns/$h/hosts"
    done
    rm -f "$hosts_file"
    echo "$net.0/24"
    ;;
down)
    prefix=${1:?prefix}
    for ns in $(ip netns list | awk '{print $1}' | grep "^$prefix-" || true); do
        ip netns pids "$ns" 2>/dev/null | xargs -r kill -KILL 2>/dev/null || true
        ip netns delete "$ns" || true
        rm -rf "/etc/netns/$ns"
    done
    ;;
run)
    host=${1:?host}; shift
    exec ip netns exec "$host" unshare --uts sh -c 'hostname "$0"; exec "$@"' "$host" "$@"
    ;;
*)
    echo "hosts.sh: unknown command $cmd" >&2; exit 2
    ;;
esac
