#!/usr/bin/env bash
# Installs the system packages bulkhead's tests and demo need, only where
# missing. Debian/Ubuntu (apt-get); run as root. Everything Go-based
# (kube-apiserver, etcd, load tools) is built from the Go module proxy instead.
set -euo pipefail

need=()
command -v ip >/dev/null 2>&1 || need+=(iproute2)
command -v curl >/dev/null 2>&1 || need+=(curl)
for extra in "$@"; do
  case "$extra" in
    # make bench-peers: the peers, the load, and taskset to pin them
    bench) command -v wrk >/dev/null || need+=(wrk); command -v nginx >/dev/null || need+=(nginx-light); command -v haproxy >/dev/null || need+=(haproxy); command -v taskset >/dev/null || need+=(util-linux) ;;
    # the tests check bench-peers' nginx and HAProxy configurations with the real programs
    peers) command -v nginx >/dev/null || need+=(nginx-light); command -v haproxy >/dev/null || need+=(haproxy) ;;
  esac
done
if [ ${#need[@]} -eq 0 ]; then
  exit 0
fi
if [ "$(id -u)" != 0 ]; then
  echo "missing packages: ${need[*]}; install them (as root: apt-get install ${need[*]})" >&2
  exit 1
fi
echo "installing: ${need[*]}"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
# The packages may start system-wide nginx and HAProxy services where an
# init system runs; the tests and benchmarks start their own instances on
# free ports and do not need them.
