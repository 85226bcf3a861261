#!/usr/bin/env bash
# Installs the Debian packages the local infrastructure needs when they are missing and we are
# root: redis-server and prometheus (required), chromium (required: the pages' tests drive it
# through Playwright, which cannot download its own browsers here), docker-compose (optional:
# it only validates docker-compose.yml where Docker's compose plugin is absent). Java 17 and
# Maven must be there.
set -euo pipefail
required=()
command -v redis-server >/dev/null || required+=(redis-server)
command -v prometheus >/dev/null || required+=(prometheus)
command -v chromium >/dev/null || required+=(chromium)
optional=()
docker compose version >/dev/null 2>&1 || command -v docker-compose >/dev/null || optional+=(docker-compose)

if [ "$(id -u)" -ne 0 ]; then
  if [ ${#required[@]} -gt 0 ]; then
    echo "nba: missing Debian packages: ${required[*]} (run: sudo apt-get install -y ${required[*]})" >&2
    exit 1
  fi
  exit 0
fi
packages=("${required[@]}" "${optional[@]}")
[ ${#packages[@]} -eq 0 ] && exit 0
echo "nba: installing Debian packages: ${packages[*]}"
apt-get update -qq
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${packages[@]}" >/dev/null
# Where an init system runs, Debian starts packaged services on install; ours run on their own
# ports and data dirs, so stop the system copies to keep things predictable.
for svc in redis-server prometheus; do
  if command -v service >/dev/null; then service "$svc" stop >/dev/null 2>&1 || true; fi
done
