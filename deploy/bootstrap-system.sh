#!/usr/bin/env bash
# Installs the Debian packages the local infrastructure needs (redis-server, prometheus), when
# they are missing and we are root. Java 17 and Maven are expected on the machine already.
set -euo pipefail
missing=()
command -v redis-server >/dev/null || missing+=(redis-server)
command -v prometheus >/dev/null || missing+=(prometheus)
[ ${#missing[@]} -eq 0 ] && exit 0
if [ "$(id -u)" -ne 0 ]; then
  echo "nba: missing Debian packages: ${missing[*]} (run: sudo apt-get install -y ${missing[*]})" >&2
  exit 1
fi
echo "nba: installing Debian packages: ${missing[*]}"
apt-get update -qq
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
# Debian starts packaged services on install where an init system runs; ours run on their own
# ports and data dirs, so stop the system copies to keep the default ports free.
for svc in redis-server prometheus; do
  if command -v service >/dev/null; then service "$svc" stop >/dev/null 2>&1 || true; fi
done
