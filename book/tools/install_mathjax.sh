#!/usr/bin/env bash
# Install MathJax 3 (its es5 build) into book/_static_vendor/mathjax so the book typesets formulas offline.
# Sphinx copies book/_static_vendor into _static/ (html_static_path) and mathjax_path points at it.
# Source: the npm registry via `npm pack` (no global install); a pre-downloaded tarball can be given in
# $MATHJAX_TGZ for machines without registry access. Idempotent: does nothing when already installed.
set -euo pipefail
cd "$(dirname "$0")/../.."
dest=book/_static_vendor/mathjax
version_spec="${MATHJAX_VERSION:-3}"
if [[ -f "$dest/tex-mml-chtml.js" && -f "$dest/VERSION" ]]; then
  exit 0
fi
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
if [[ -n "${MATHJAX_TGZ:-}" ]]; then
  [[ -f "$MATHJAX_TGZ" ]] || { echo "MATHJAX_TGZ=$MATHJAX_TGZ: no such file" >&2; exit 1; }
  cp "$MATHJAX_TGZ" "$work/mathjax.tgz"
else
  if ! command -v npm >/dev/null 2>&1; then
    echo "npm not found: install it (e.g. apt-get install -y npm) or set MATHJAX_TGZ to a mathjax-3.x.tgz" >&2
    exit 1
  fi
  (cd "$work" && npm pack --silent --prefer-offline "mathjax@${version_spec}" >/dev/null)
  mv "$work"/mathjax-*.tgz "$work/mathjax.tgz"
fi
tar -xzf "$work/mathjax.tgz" -C "$work"
[[ -f "$work/package/es5/tex-mml-chtml.js" ]] || { echo "tarball has no package/es5/tex-mml-chtml.js" >&2; exit 1; }
rm -rf "$dest"
mkdir -p "$(dirname "$dest")"
cp -r "$work/package/es5" "$dest"
python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["version"])' "$work/package/package.json" > "$dest/VERSION"
echo "MathJax $(cat "$dest/VERSION") installed in $dest"
