#!/usr/bin/env bash
# Open MPI's rsh agent for the namespace hosts (--mca plm_rsh_agent):
# called as `rsh.sh [options] HOST COMMAND...`, it runs COMMAND on HOST
# through hosts.sh instead of a remote shell.
set -euo pipefail
while [[ $# -gt 0 && $1 == -* ]]; do
    case $1 in
        -x|-n|-T|-q) shift ;;
        -p|-l|-o) shift 2 ;;
        *) shift ;;
    esac
done
host=${1:?host}; shift
exec "$(dirname "$0")/hosts.sh" run "$host" sh -c "$*"
