#!/usr/bin/env bash
# Installs the machine-level tools the stack runs on, from Debian's packages, only when missing:
# Java 17 (Kafka, Connect, Apicurio, OpenSearch), Maven (fetches their jars), PostgreSQL 15, Redis,
# Prometheus (and its promtool, which the suite runs on the rules). With `test`: also Chromium, the
# browser the ops console's tests drive (playwright launched on Debian's build by its path: playwright's own
# browser download comes from a website, which these machines cannot reach).
set -euo pipefail

pg_major=$(sed -n 's/^postgresql *= *"\([0-9]*\)".*/\1/p' "$(dirname "$0")/versions.toml")
missing=()
command -v java >/dev/null || missing+=(openjdk-17-jre-headless)
command -v mvn >/dev/null || missing+=(maven)
[ -x "/usr/lib/postgresql/${pg_major}/bin/postgres" ] || missing+=("postgresql-${pg_major}")
command -v redis-server >/dev/null || missing+=(redis-server)
command -v prometheus >/dev/null || missing+=(prometheus)
command -v python3 >/dev/null || missing+=(python3 python3-venv)
if [ "${1:-}" = "test" ]; then
  command -v chromium >/dev/null || missing+=(chromium)
fi

if [ ${#missing[@]} -eq 0 ]; then
  exit 0
fi
echo "installing system packages: ${missing[*]}"
if [ "$(id -u)" -ne 0 ]; then
  echo "error: these packages are missing and installing them needs root: sudo apt-get install -y ${missing[*]}" >&2
  exit 1
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
# Debian starts a system-wide PostgreSQL cluster and Redis on install, on the ports the project's
# own stack uses; the project runs its own, so those services are stopped again.
if command -v pg_lsclusters >/dev/null; then
  pg_lsclusters -h 2>/dev/null | awk '$4 == "online" {print $1, $2}' | while read -r ver name; do
    pg_ctlcluster "$ver" "$name" stop || true
  done
fi
for service in redis-server prometheus; do
  if [[ " ${missing[*]} " == *" ${service} "* ]]; then
    service "$service" stop >/dev/null 2>&1 || true
  fi
done
echo "system packages installed"
