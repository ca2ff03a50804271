#!/usr/bin/env bash
# Re-vendor the front-end assets from the npm registry at the pinned versions.
# Run by hand (`make vendor`) when upgrading; the results are committed under static/vendor.
set -euo pipefail
HTMX=2.0.11
PICO=2.1.1
HLS=1.7.4
cd "$(dirname "$0")/.."
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
(cd "$work" && npm pack --silent "htmx.org@$HTMX" "@picocss/pico@$PICO" "hls.js@$HLS" >/dev/null)
for tgz in "$work"/*.tgz; do
  mkdir -p "$work/$(basename "$tgz" .tgz)" && tar -xzf "$tgz" -C "$work/$(basename "$tgz" .tgz)"
done
out=static/vendor
mkdir -p "$out"
cp "$work/htmx.org-$HTMX/package/dist/htmx.min.js" "$out/htmx.min.js"
cp "$work/picocss-pico-$PICO/package/css/pico.min.css" "$out/pico.min.css"
cp "$work/hls.js-$HLS/package/dist/hls.light.min.js" "$out/hls.light.min.js"
cp "$work/htmx.org-$HTMX/package/LICENSE" "$out/LICENSE.htmx"
cp "$work/picocss-pico-$PICO/package/LICENSE.md" "$out/LICENSE.pico"
cp "$work/hls.js-$HLS/package/LICENSE" "$out/LICENSE.hls"
echo "vendored htmx $HTMX, pico $PICO, hls.js $HLS into $out"
