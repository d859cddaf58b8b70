#!/usr/bin/env bash
# Installs this judge from its lock file. Not `npm ci`: node-llama-cpp lists
# prebuilt binaries for every platform as optional dependencies, and the
# registry this project's machines reach lacks the win/mac ones, so the lock
# file cannot hold them and `npm ci` refuses it as out of sync. `npm install
# --omit=optional` with the lock installs exactly the locked versions (the
# linux-x64 CPU binary is a direct dependency) and must leave the lock file
# unchanged, which is checked.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")"
before=$(sha256sum package-lock.json)
NODE_LLAMA_CPP_SKIP_DOWNLOAD=true npm install --ignore-scripts --omit=optional --no-audit --no-fund --loglevel=error
if [ "$(sha256sum package-lock.json)" != "$before" ]; then
	echo "judges/llamacpp: npm changed package-lock.json; the pinned versions no longer resolve" >&2
	exit 1
fi
