#!/usr/bin/env bash
# Browser end-to-end test of /docs and /redoc: starts `fasttrack serve` on a temporary
# SQLite database and a free port, runs docs.e2e.mjs in headless Chromium, stops the server.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(dirname "$here")

if [ ! -x /usr/bin/chromium ]; then
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
fi
make -C "$root" --no-print-directory install
(cd "$here" && npm install --no-audit --no-fund --package-lock=false --loglevel=error)

port=${E2E_PORT:-$("$root/.venv/bin/python" - <<'PY'
import socket
for port in range(8200, 8300):
    with socket.socket() as probe:
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            continue
        print(port)
        break
PY
)}
workdir=$(mktemp -d)
server_pid=
cleanup() {
  if [ -n "$server_pid" ]; then
    kill "$server_pid" 2>/dev/null || true
    wait "$server_pid" 2>/dev/null || true
  fi
  rm -rf "$workdir"
}
trap cleanup EXIT

export DATABASE_URL="sqlite+aiosqlite:///$workdir/e2e.db" LOG_LEVEL=WARNING
"$root/.venv/bin/fasttrack" serve --host 127.0.0.1 --port "$port" >"$workdir/server.log" 2>&1 &
server_pid=$!
base_url="http://127.0.0.1:$port"
for _ in $(seq 1 100); do
  if "$root/.venv/bin/python" -c "import sys, urllib.request; urllib.request.urlopen(sys.argv[1], timeout=1)" "$base_url/health" 2>/dev/null; then
    break
  fi
  if ! kill -0 "$server_pid" 2>/dev/null; then
    cat "$workdir/server.log" >&2
    exit 1
  fi
  sleep 0.1
done

if ! BASE_URL="$base_url" node "$here/docs.e2e.mjs"; then
  echo "--- server log ---" >&2
  cat "$workdir/server.log" >&2
  exit 1
fi
