#!/usr/bin/env bash
# Installs what the cashier's browser tests need when it is missing: Debian's chromium,
# zbar-tools (zbarimg reads the QR codes back), the Noto CJK fonts (Chinese pages), and the
# pinned playwright-core in api/tests/browser/node_modules.
set -euo pipefail
cd "$(dirname "$0")/.."

missing=()
[ -x /usr/bin/chromium ] || missing+=(chromium)
command -v zbarimg >/dev/null 2>&1 || missing+=(zbar-tools)
[ -d /usr/share/fonts/opentype/noto ] || missing+=(fonts-noto-cjk)
command -v node >/dev/null 2>&1 || missing+=(nodejs npm)
if [ ${#missing[@]} -gt 0 ]; then
  echo "installing ${missing[*]}"
  apt-get update -q
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${missing[@]}"
fi
if [ ! -d api/tests/browser/node_modules/playwright-core ]; then
  npm ci --prefix api/tests/browser --no-audit --no-fund
fi
