#!/usr/bin/env bash
# Install the Debian packages the test suite runs for real: Mosquitto, InfluxDB 1.x,
# VictoriaMetrics (InfluxDB v2 write API), socat (virtual serial lines), Chromium (report
# and status page rendering) and systemd (systemd-analyze verify of the unit). Nothing is
# started here: the test fixtures start each server on a free 127.0.0.1 port with a
# temporary directory and stop it afterwards.
set -euo pipefail

need=()
command -v mosquitto >/dev/null 2>&1 || [ -x /usr/sbin/mosquitto ] || need+=(mosquitto mosquitto-clients)
command -v influxd >/dev/null 2>&1 || need+=(influxdb)
command -v victoria-metrics >/dev/null 2>&1 || need+=(victoria-metrics)
command -v socat >/dev/null 2>&1 || need+=(socat)
command -v chromium >/dev/null 2>&1 || need+=(chromium)
command -v chromedriver >/dev/null 2>&1 || need+=(chromium-driver)
command -v systemd-analyze >/dev/null 2>&1 || need+=(systemd)  # verifies deploy/edge-agent.service
command -v pdftoppm >/dev/null 2>&1 || need+=(poppler-utils)    # the report's PDF print test
# the deploy tutorial as root: the gateway's python3 -m venv, a user, a private systemd
/usr/bin/python3 -c 'import ensurepip, venv' >/dev/null 2>&1 || need+=(python3-venv)
command -v useradd >/dev/null 2>&1 || need+=(passwd)
command -v nsenter >/dev/null 2>&1 || need+=(util-linux)
# the first-machine tutorial's own line, run as root: sudo apt-get install mosquitto
# mosquitto-clients influxdb influxdb-client (all present, so apt-get only confirms them)
command -v sudo >/dev/null 2>&1 || need+=(sudo)
command -v mosquitto_sub >/dev/null 2>&1 || need+=(mosquitto-clients)
command -v influx >/dev/null 2>&1 || need+=(influxdb-client)

if [ ${#need[@]} -eq 0 ]; then
  echo "system packages: all present"
  exit 0
fi
if [ "$(id -u)" -ne 0 ]; then
  echo "system packages missing: ${need[*]}" >&2
  echo "install them with: sudo apt-get update && sudo apt-get install -y ${need[*]}" >&2
  echo "(without them the server tests skip locally, and fail under CI=true)" >&2
  exit 0
fi
echo "installing system packages: ${need[*]}"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
echo "system packages: installed ${need[*]}"
