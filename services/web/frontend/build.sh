#!/usr/bin/env bash
# Builds the web service's front-end assets into services/web/static/govuk/:
#   vestry.css                 GOV.UK Frontend 6 compiled from vestry.scss, branded as the
#                              partnership (system fonts, no @font-face, no crown)
#   govuk-frontend.min.js      GOV.UK Frontend's components, from the npm package
#   assets/images/, assets/manifest.json
#                              the partnership's icons (frontend/images/, frontend/manifest.json),
#                              not GOV.UK's: every image in govuk-frontend's assets/images is the
#                              crown or GOV.UK's own mark
# Idempotent: `npm ci` runs only when package.json or package-lock.json changed since the last
# install, and the rest only when an input changed. Needs Node.js >= 20.19 and npm.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
out="$(cd "$here/.." && pwd)/static/govuk"
cd "$here"

command -v npm >/dev/null 2>&1 || { echo "build.sh: npm is not on PATH (Node.js 20.19+ is needed)" >&2; exit 1; }

hash_of() { cat "$@" | sha256sum | cut -d' ' -f1; }

# 1. Dependencies, exactly as locked.
lock_hash="$(hash_of package.json package-lock.json)"
lock_stamp="node_modules/.vestry-installed"
if [[ ! -f "$lock_stamp" || "$(cat "$lock_stamp")" != "$lock_hash" ]]; then
  echo "build.sh: npm ci"
  # --ignore-scripts: the one install script in the tree (@parcel/watcher, an optional
  # dependency of sass used only by `sass --watch`) is not needed to compile.
  log="$(mktemp)"
  if ! npm ci --ignore-scripts --no-audit --no-fund --loglevel=error >"$log" 2>&1; then
    cat "$log" >&2
    rm -f "$log"
    exit 1
  fi
  rm -f "$log"
  echo "$lock_hash" >"$lock_stamp"
fi

# 2. Everything else, when any input changed.
inputs=(build.sh vestry.scss _urls.scss manifest.json images/* package-lock.json)
build_hash="$(hash_of "${inputs[@]}")"
# The stamp stays out of static/ (which the web service serves).
build_stamp="node_modules/.vestry-built"
if [[ -f "$build_stamp" && "$(cat "$build_stamp")" == "$build_hash" && -f "$out/vestry.css" &&
  -f "$out/govuk-frontend.min.js" && -f "$out/assets/manifest.json" ]]; then
  exit 0
fi

echo "build.sh: compiling vestry.scss -> services/web/static/govuk/vestry.css"
mkdir -p "$out"
tmp="$(mktemp -d "$out/.tmp.XXXXXX")"
trap 'rm -rf "$tmp"' EXIT

node_modules/.bin/sass --load-path=node_modules --style=compressed --no-source-map \
  --quiet-deps --silence-deprecation=import vestry.scss "$tmp/vestry.css"

# The partnership is not GOV.UK: its CSS must not name the GOV.UK typeface, declare a
# font face or load any font file.
if grep -Eq 'GDS Transport|@font-face|\.woff2?|\.ttf|\.otf' "$tmp/vestry.css"; then
  echo "build.sh: vestry.css names GDS Transport or loads a font file; check vestry.scss" >&2
  exit 1
fi
if grep -Eq 'govuk-crest|govuk-icon' "$tmp/vestry.css"; then
  echo "build.sh: vestry.css references a crown image; check _urls.scss" >&2
  exit 1
fi

mkdir -p "$tmp/assets/images"
cp node_modules/govuk-frontend/dist/govuk/govuk-frontend.min.js "$tmp/"
cp images/* "$tmp/assets/images/"
cp manifest.json "$tmp/assets/manifest.json"

# Replace the previous build in one step per entry, so a server never sees a half-written file.
rm -rf "$out/assets"
mv "$tmp/assets" "$out/assets"
mv "$tmp/govuk-frontend.min.js" "$out/govuk-frontend.min.js"
mv "$tmp/vestry.css" "$out/vestry.css"
echo "$build_hash" >"$build_stamp"
