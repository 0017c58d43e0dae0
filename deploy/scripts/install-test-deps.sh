#!/bin/sh
# Installs what the operations tests need and that Go modules cannot bring:
# Prometheus with promtool (the real Prometheus check) and docker-compose
# (compose file validation; there is no Docker engine here, `config` needs
# none). Debian packages only. Idempotent: does nothing when both are there.
# Needs root (CI runs as root); prints why and exits non-zero otherwise.
set -eu

need=""
command -v prometheus >/dev/null 2>&1 || need="$need prometheus"
command -v promtool >/dev/null 2>&1 || need="$need prometheus"
command -v docker-compose >/dev/null 2>&1 || need="$need docker-compose"
if [ -z "$need" ]; then
	exit 0
fi
pkgs=$(echo $need | tr ' ' '\n' | sort -u | tr '\n' ' ')
if [ "$(id -u)" != 0 ]; then
	echo "install-test-deps: need root to apt-get install $pkgs" >&2
	exit 1
fi
echo "install-test-deps: installing $pkgs" >&2
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq >/dev/null
# --no-install-recommends: the prometheus package recommends exporters we do not need.
# The package's postinst may try to start a service; there is no init here, which is harmless.
apt-get install -y -qq --no-install-recommends $pkgs >/dev/null
command -v prometheus >/dev/null && command -v promtool >/dev/null && command -v docker-compose >/dev/null
