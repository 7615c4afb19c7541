#!/usr/bin/env bash
# Installs Debian's headless-capable Chromium for the report screenshot test (tests/eval).
# Skips when /usr/bin/chromium exists. Needs root and apt (CI runs as root on Debian).
set -euo pipefail
if [ -x /usr/bin/chromium ]; then
  echo "chromium: already installed at /usr/bin/chromium"
  exit 0
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq chromium
/usr/bin/chromium --version
