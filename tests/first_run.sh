#!/usr/bin/env bash
# The reader's first run: the README's two set-up commands, exactly as written there, on a fresh
# clone in a fresh virtual environment with empty stylelib and book caches and ../shared beside
# it. Prints the time of each command. The book is built in the quick profile here so that CI
# stays short; the book-profile build time is measured separately and recorded in the README.
# Usage (from the repository root): bash tests/first_run.sh
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
shared=$(cd "$repo/.." && pwd)/shared
mapfile -t commands < <(awk '/^```bash$/ {inside=1; next} /^```$/ {inside=0} inside' "$repo/README.md")
if [ "${#commands[@]}" -ne 2 ]; then
  echo "README.md must hold exactly two set-up commands in bash blocks; found ${#commands[@]}." >&2
  exit 1
fi
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
git clone -q "$repo" "$work/clone"
ln -s "$shared" "$work/shared"
python -m venv "$work/venv"
export PATH="$work/venv/bin:$PATH" VIRTUAL_ENV="$work/venv"
export STYLELIB_CACHE_DIR="$work/cache" STYLELIB_PROFILE=quick STYLELIB_FIRST_RUN=1
unset STYLELIB_ASSETS_DIR
cd "$work/clone"
for i in 0 1; do
  printf '\n== README command %d: %s\n' "$((i + 1))" "${commands[$i]}"
  start=$SECONDS
  bash -c "${commands[$i]}"
  printf -- '-- README command %d took %d s\n' "$((i + 1))" "$((SECONDS - start))"
done
