#!/usr/bin/env bash
# Every check CI runs, in the quick profile: lint, types, unit tests + notebooks (nbval), book build.
# Usage (from the repository root): bash tests/run_all.sh
set -euo pipefail
cd "$(dirname "$0")/.."
export STYLELIB_PROFILE=quick
export STYLELIB_ASSETS_DIR="${STYLELIB_ASSETS_DIR:-$(cd .. && pwd)/shared/assets}"
export PYTHONUNBUFFERED=1
step() { printf '\n== %s (%s)\n' "$1" "$(date +%T)"; }
timed() { local start=$SECONDS; "$@"; printf -- '-- %ss: %s\n' "$((SECONDS - start))" "$*"; }

step "assets mirror: $STYLELIB_ASSETS_DIR"
[ -d "$STYLELIB_ASSETS_DIR" ] || { echo "No asset mirror at $STYLELIB_ASSETS_DIR: set STYLELIB_ASSETS_DIR." >&2; exit 1; }
step "chromium for the browser checks"
if ! command -v chromium >/dev/null; then
  [ "$(id -u)" = 0 ] || { echo "Install Debian's chromium (apt-get install chromium) first." >&2; exit 1; }
  apt-get update -qq && apt-get install -y -qq chromium >/dev/null
fi
chromium --version
step "lint and types"
timed ruff check stylelib tests notebooks
timed mypy
step "unit tests and notebooks (nbval, quick profile)"
timed python -m pytest -q tests notebooks --nbval-lax --nbval-current-env -p no:cacheprovider
step "book build (quick profile, warnings are errors)"
timed jupyter-book build . --path-output _build/quick -W -n --keep-going
step "browser checks of the built book (headless Chromium; screenshots in _build/screenshots)"
timed env BOOK_HTML=_build/quick/_build/html python -m pytest -q tests/browser -p no:cacheprovider
if [ -z "${STYLELIB_FIRST_RUN:-}" ]; then
  step "first run: the README's commands on a fresh clone and virtual environment"
  timed bash tests/first_run.sh
fi
