import { createHash } from 'node:crypto';

/** Where the page's bare imports are found in the folder: onnxruntime-web and the project's preprocessing. */
export const IMPORT_MAP = {
  imports: {
    'onnxruntime-web/wasm': './ort/ort.wasm.min.mjs',
    '@transformaly/core/preprocess': './lib/resize-normalize.js',
  },
};

const STYLE = `
  body { font: 15px/1.45 system-ui, sans-serif; margin: 0 auto; max-width: 980px; padding: 1rem 1.5rem 3rem; color: #1d232a; }
  h1 { font-size: 1.4rem; margin: 0.5rem 0; }
  #about { color: #4a5561; }
  .banner { background: #fdecea; border: 1px solid #e8a39b; color: #8a1c12; padding: 0.5rem 0.75rem; border-radius: 6px; }
  #drop { border: 2px dashed #9aa7b4; border-radius: 10px; padding: 1.5rem; text-align: center; margin: 1rem 0; }
  #drop.over { background: #eef5fc; border-color: #3b7dd8; }
  #status { min-height: 1.4em; color: #4a5561; }
  #status.error { color: #b42318; }
  table { border-collapse: collapse; width: 100%; margin-top: 1rem; }
  th, td { text-align: left; padding: 0.3rem 0.6rem; border-bottom: 1px solid #e3e8ee; }
  td.score { font-variant-numeric: tabular-nums; text-align: right; }
  tr.anomalous td.decision { color: #b42318; font-weight: 600; }
  tr.normal td.decision { color: #1a7f37; }
  tr.failed td { color: #b42318; }
  svg .bar.normal { fill: #6ea8dc; }
  svg .bar.anomalous { fill: #e8826f; }
  svg .axis { stroke: #6b7785; }
  svg .threshold { stroke: #b42318; stroke-width: 2; stroke-dasharray: 5 3; }
  svg .label { font-size: 11px; fill: #4a5561; }
  svg .label.middle { text-anchor: middle; }
  svg .label.end { text-anchor: end; }
`;

const sha256 = (text: string) => `'sha256-${createHash('sha256').update(text, 'utf8').digest('base64')}'`;

/**
 * The page. Its Content-Security-Policy lets it load code and data from its own folder's origin only (scripts, the
 * wasm engine, the model), so nothing reaches the network beyond the folder even if a file were changed.
 */
export function indexHtml(title: string): string {
  const importMap = JSON.stringify(IMPORT_MAP);
  const csp = [
    "default-src 'none'",
    `script-src 'self' 'wasm-unsafe-eval' ${sha256(importMap)}`,
    "connect-src 'self'",
    `style-src ${sha256(STYLE)}`,
    "img-src 'self' data:",
    "base-uri 'none'",
    "form-action 'none'",
  ].join('; ');
  return `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta http-equiv="Content-Security-Policy" content="${csp}">
<title>${escapeHtml(title)}</title>
<link rel="icon" href="data:,">
<style>${STYLE}</style>
<script type="importmap">${importMap}</script>
<script type="module" src="./app.js"></script>
</head>
<body>
<h1>${escapeHtml(title)}</h1>
<p class="banner" id="untrained" hidden>This detector was fitted on an UNTRAINED backbone (random weights): its scores are for tests and smoke runs only.</p>
<p id="about"></p>
<div id="drop">
  <p>Drop image files here, or <label><input type="file" id="files" multiple accept="image/*"></label></p>
  <p id="status">loading…</p>
</div>
<figure id="histogram"></figure>
<table id="results">
  <thead><tr><th>file</th><th>size</th><th>decision</th></tr></thead>
  <tbody></tbody>
</table>
</body>
</html>
`;
}

function escapeHtml(text: string): string {
  return text.replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
}
