#!/usr/bin/env bash
# Installs the pinned reference implementations ("judges") that some tests
# compare moeforge against. Each judge lives in judges/NAME/ with a committed
# package.json and package-lock.json; its node_modules/ is ignored by git.
# Run by .ci/run before go test; safe to run again (npm ci is idempotent).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")"
if ! command -v npm >/dev/null 2>&1; then
	echo "judges: npm not found; judge tests will be skipped" >&2
	exit 0
fi
for dir in */; do
	dir=${dir%/}
	[ -f "$dir/package-lock.json" ] || continue
	echo "judges: installing $dir" >&2
	# A judge that cannot use npm ci brings its own install script.
	if [ -x "$dir/install.sh" ]; then
		"$dir/install.sh"
		continue
	fi
	# Prebuilt binaries ship inside the registry packages; no install script
	# may download anything (node-llama-cpp would try to).
	(cd "$dir" && NODE_LLAMA_CPP_SKIP_DOWNLOAD=true npm ci --ignore-scripts --no-audit --no-fund --loglevel=error)
done
