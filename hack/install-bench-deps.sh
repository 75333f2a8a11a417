#!/usr/bin/env bash
# Installs what `make bench-peers` (hack/benchpeers) needs from Debian, only
# where missing: nginx (nginx-light), haproxy, wrk, and taskset (util-linux).
# Stock skipper is not a package: hack/benchpeers builds it from the Go
# module proxy (hack/peers). Debian/Ubuntu (apt-get); run as root.
set -euo pipefail

need=()
command -v nginx >/dev/null 2>&1 || need+=(nginx-light)
command -v haproxy >/dev/null 2>&1 || need+=(haproxy)
command -v wrk >/dev/null 2>&1 || need+=(wrk)
command -v taskset >/dev/null 2>&1 || need+=(util-linux)
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
# init system runs; the benchmark starts its own instances on free ports
# and does not need them.
