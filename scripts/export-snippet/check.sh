#!/usr/bin/env bash
# Runs the Python snippet of docs/Reference/Export.md on a detector's exported model and compares its combined scores
# with `transformaly score` (see README.md). Usage: scripts/export-snippet/check.sh DETECTOR_DIR IMAGE...
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
detector="$1"
shift
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
# The snippet: the first ```python block of the doc, unchanged.
awk '/^```python$/ { on = 1; next } on && /^```$/ { exit } on' "$repo/docs/Reference/Export.md" >"$work/snippet.py"
node "$repo/cli/bin/transformaly.js" export --detector "$detector" --out "$work/detector.onnx" >/dev/null 2>&1
node "$repo/cli/bin/transformaly.js" score --detector "$detector" --out "$work/score.csv" "$@" 2>/dev/null
(cd "$work" && PYTHONPATH="$here" /usr/bin/python3 snippet.py "$@") >"$work/snippet.tsv"
cat "$work/snippet.tsv"
node - "$work/snippet.tsv" "$work/score.csv" <<'JS'
const { readFileSync } = require('node:fs');
const { resolve } = require('node:path');
const [snippet, csv] = process.argv.slice(2);
const mine = new Map(readFileSync(snippet, 'utf8').trim().split('\n').map((l) => l.split('\t')).map(([p, s, d]) => [resolve(p), { score: Number(s), anomalous: d === 'anomalous' }]));
const rows = readFileSync(csv, 'utf8').trim().split('\n');
const header = rows.shift().split(',');
let worst = 0, scale = 0, agree = 0;
for (const row of rows) {
  const f = Object.fromEntries(row.split(',').map((v, i) => [header[i], v]));
  const m = mine.get(resolve(f.path));
  worst = Math.max(worst, Math.abs(m.score - Number(f.combined)));
  scale = Math.max(scale, Math.abs(Number(f.combined)));
  if (m.anomalous === (f.anomalous === '1')) agree++;
}
console.log(`snippet vs transformaly score, ${rows.length} images: max |combined difference| ${worst.toExponential(2)} (relative to the largest score ${(worst / scale).toExponential(2)}, printed to 6 decimals), decisions equal ${agree} of ${rows.length}`);
process.exit(worst <= 1e-4 * scale && agree === rows.length ? 0 : 1);
JS
