const ESCAPES: Record<string, string> = { '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' };

/** Escapes text for HTML element content and quoted attribute values alike. */
export function escapeHtml(value: unknown): string {
  return String(value).replace(/[&<>"']/g, (ch) => ESCAPES[ch]);
}

/** Metric value as a percentage with one decimal, as in the paper's tables. */
export function percent(value: number): string {
  return Number.isFinite(value) ? (value * 100).toFixed(1) : '–';
}

/** A score or threshold: five significant digits, plain notation where it stays short. */
export function number(value: number): string {
  if (!Number.isFinite(value)) return String(value);
  return String(Number(value.toPrecision(5)));
}

// The page runs no script and loads nothing: the policy makes the browser enforce what the renderer promises.
export const CONTENT_SECURITY_POLICY = "default-src 'none'; style-src 'unsafe-inline'; img-src data:";

export const STYLESHEET = `
:root { color-scheme: light; --fg: #1f2328; --muted: #59636e; --line: #d0d7de; --soft: #f6f8fa; --accent: #2f8f46; }
* { box-sizing: border-box; }
body { margin: 0; background: #fff; color: var(--fg); font: 15px/1.5 system-ui, -apple-system, "Segoe UI", Roboto, Helvetica, Arial, sans-serif; }
main { max-width: 1240px; margin: 0 auto; padding: 24px 28px 48px; }
h1 { font-size: 26px; margin: 8px 0 4px; }
h2 { font-size: 20px; margin: 36px 0 10px; padding-bottom: 4px; border-bottom: 1px solid var(--line); }
h3 { font-size: 15px; margin: 18px 0 6px; }
h2 small, h1 small { font-weight: 400; color: var(--muted); font-size: 15px; }
code, pre, .mono { font-family: ui-monospace, SFMono-Regular, Menlo, Consolas, "Liberation Mono", monospace; font-size: 13px; }
a { color: #0b5cad; text-decoration: none; }
a:hover { text-decoration: underline; }
.banner { margin: 0 0 18px; padding: 14px 18px; border-radius: 8px; background: #b42318; color: #fff; }
.banner strong { display: block; font-size: 21px; letter-spacing: .01em; }
dl.meta { display: grid; grid-template-columns: max-content 1fr; gap: 2px 16px; margin: 10px 0 0; }
dl.meta dt { color: var(--muted); }
dl.meta dd { margin: 0; overflow-wrap: anywhere; }
.tables { display: flex; flex-wrap: wrap; gap: 12px 40px; align-items: flex-start; }
table { border-collapse: collapse; font-variant-numeric: tabular-nums; margin: 4px 0 8px; }
caption { text-align: left; font-weight: 600; padding: 0 0 6px; }
th, td { padding: 4px 12px; border-bottom: 1px solid var(--line); text-align: right; white-space: nowrap; }
th { background: var(--soft); font-weight: 600; }
th:first-child, td:first-child { text-align: left; }
th.text { text-align: left; }
td.text { text-align: left; white-space: normal; overflow-wrap: break-word; max-width: 360px; }
.scroll { max-width: 100%; overflow-x: auto; }
tbody tr:nth-child(even) td { background: #fbfcfd; }
tr.mean td { font-weight: 700; border-top: 2px solid var(--fg); background: #fff; }
td.best { color: var(--accent); font-weight: 700; }
.swatch { display: inline-block; width: 10px; height: 10px; border-radius: 2px; margin-right: 6px; vertical-align: baseline; }
section.case { margin-top: 28px; }
.charts { display: flex; flex-wrap: wrap; gap: 16px 28px; align-items: flex-start; }
figure { margin: 0; display: table; }
figure svg { display: block; max-width: 100%; height: auto; }
figcaption { display: table-caption; caption-side: bottom; color: var(--muted); font-size: 13px; margin-top: 4px; }
.facts { display: grid; grid-template-columns: max-content 1fr; gap: 2px 16px; margin: 10px 0; font-size: 14px; }
.facts dt { color: var(--muted); }
.facts dd { margin: 0; }
details { margin: 8px 0; border: 1px solid var(--line); border-radius: 6px; padding: 6px 12px; }
details > summary { cursor: pointer; font-weight: 600; }
details pre { margin: 8px 0 4px; max-height: 480px; overflow: auto; background: var(--soft); padding: 10px; border-radius: 4px; }
details ul { margin: 6px 0; padding-left: 20px; font-size: 13px; }
.note { color: var(--muted); font-size: 13px; }
footer { margin-top: 40px; color: var(--muted); font-size: 13px; border-top: 1px solid var(--line); padding-top: 10px; }
@media print { main { max-width: none; padding: 0; } details { border: none; } }
`;
