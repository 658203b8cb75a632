import { copyFileSync, existsSync, mkdirSync, mkdtempSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { chromium, type Browser } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { csvField, evaluateScores, SCORES_CSV_HEADER, summarizeCases, type CaseResult, type ResolvedConfig, type RunResults } from '@transformaly/core';
import { writeReport } from '@transformaly/report';

const CHROMIUM = '/usr/bin/chromium';
const SPACES = ['pretrained', 'finetuned', 'combined'] as const;

/** A multimodal-like run: two cases of 400 test images, 10% anomalous, scores drawn from seeded Gaussians. */
function writeRun(dir: string): void {
  let state = 12345;
  const uniform = () => {
    state = (Math.imul(state, 1103515245) + 12345) >>> 0;
    return (state + 0.5) / 4294967296;
  };
  const gaussian = () => Math.sqrt(-2 * Math.log(uniform())) * Math.cos(2 * Math.PI * uniform());
  const lines = [SCORES_CSV_HEADER];
  const cases: CaseResult[] = [];
  for (const [c, className] of ['Trouser', 'Bag <b>&</b>'].entries()) {
    const caseId = `multimodal/${className}`;
    const anomalous: boolean[] = [];
    const scores: Record<(typeof SPACES)[number], number[]> = { pretrained: [], finetuned: [], combined: [] };
    for (let i = 0; i < 400; i++) {
      const a = i % 10 === 0;
      const pretrained = -300 + 25 * gaussian() - (a ? 40 + 20 * c : 0);
      const finetuned = -50 + 8 * gaussian() - (a ? 12 : 0);
      anomalous.push(a);
      scores.pretrained.push(pretrained);
      scores.finetuned.push(finetuned);
      scores.combined.push(pretrained + finetuned);
      const flagged = pretrained + finetuned < -395;
      lines.push([csvField(caseId), csvField(`test/${c}/${i}.png`), a ? csvField(className) : 'other', a ? 1 : 0, pretrained, finetuned, pretrained + finetuned, flagged ? 1 : 0].join(','));
    }
    const metrics: CaseResult['metrics'] = {};
    for (const space of SPACES) {
      const e = evaluateScores({ normality: Float64Array.from(scores[space]), anomalous });
      metrics[space] = { auroc: e.auroc, averagePrecision: e.averagePrecision };
    }
    cases.push({
      caseId,
      mode: 'multimodal',
      className,
      trainImages: 3240,
      heldOutImages: 360,
      testImages: 400,
      anomalousTestImages: 40,
      threshold: -395,
      metrics,
      seconds: { fit: 95.2 + c, score: 8.4 },
      skipped: c === 0 ? [{ id: 'train/broken.png', reason: 'truncated PNG' }] : [],
    });
  }
  const summary = (metric: 'auroc' | 'averagePrecision') =>
    summarizeCases(cases.map((c) => ({ caseId: c.caseId, metrics: Object.fromEntries(Object.entries(c.metrics).map(([s, m]) => [s, m[metric]])) })));
  const results: RunResults = {
    runId: '0123456789ab',
    untrainedBackbone: true,
    backbone: { id: 'vit-tiny-random', sha256: 'ab'.repeat(32) },
    cases,
    auroc: summary('auroc'),
    averagePrecision: summary('averagePrecision'),
    config: { protocol: { mode: 'multimodal', classes: ['Trouser', 'Bag <b>&</b>'] }, batchSize: 32, seed: 0 } as unknown as ResolvedConfig,
    packages: { node: process.versions.node, '@transformaly/core': '0.1.0' },
  };
  writeFileSync(join(dir, 'results.json'), JSON.stringify(results, null, 2));
  writeFileSync(join(dir, 'scores.csv'), `${lines.join('\n')}\n`);
}

describe('report.html in headless Chromium', () => {
  let browser: Browser | undefined;
  const dir = mkdtempSync(join(tmpdir(), 'transformaly-report-browser-'));

  beforeAll(async () => {
    if (!existsSync(CHROMIUM)) {
      throw new Error(
        `Chromium is not at ${CHROMIUM}: install Debian's package with "apt-get install chromium" (CI installs it). ` +
          'This test drives that browser through playwright-core and never downloads one.',
      );
    }
    browser = await chromium.launch({
      executablePath: CHROMIUM,
      args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'],
    });
  });
  afterAll(async () => {
    await browser?.close();
    rmSync(dir, { recursive: true, force: true });
  });

  it('renders the charts and tables with no errors and no requests beyond the file itself', async () => {
    writeRun(dir);
    const reportPath = await writeReport(dir);
    const url = pathToFileURL(reportPath).href;
    const page = await browser!.newPage({ viewport: { width: 1280, height: 900 } });
    const consoleErrors: string[] = [];
    const pageErrors: string[] = [];
    const failed: string[] = [];
    const requests: string[] = [];
    page.on('console', (m) => {
      if (m.type() === 'error' || m.type() === 'warning') consoleErrors.push(`${m.type()}: ${m.text()}`);
    });
    page.on('pageerror', (e) => pageErrors.push(e.message));
    page.on('requestfailed', (r) => failed.push(`${r.url()}: ${r.failure()?.errorText}`));
    page.on('request', (r) => requests.push(r.url()));
    await page.goto(url, { waitUntil: 'load' });

    expect(await page.title()).toBe('Transformaly run 0123456789ab (UNTRAINED backbone)');
    const banner = page.locator('.banner.untrained');
    await expect(banner.isVisible()).resolves.toBe(true);
    expect((await banner.boundingBox())!.y).toBeLessThan(100);

    const rocs = page.locator('figure.roc svg');
    expect(await rocs.count()).toBe(2);
    for (let i = 0; i < 2; i++) {
      const svg = rocs.nth(i);
      const box = (await svg.boundingBox())!;
      expect(box.width).toBeGreaterThan(200);
      expect(box.height).toBeGreaterThan(200);
      // One drawn line per space, each with a real extent on the page.
      const lines = await svg.locator('g.mark-line path').evaluateAll((paths) =>
        paths.map((p) => {
          const b = (p as unknown as { getBBox(): { width: number; height: number } }).getBBox();
          return { stroke: p.getAttribute('stroke'), width: b.width, height: b.height };
        }),
      );
      const curves = lines.filter((l) => l.stroke !== '#aaa');
      expect(curves.map((l) => l.stroke).sort()).toEqual(['#2f8f46', '#4e79a7', '#f28e2b']);
      for (const l of curves) {
        expect(l.width).toBeGreaterThan(100);
        expect(l.height).toBeGreaterThan(100);
      }
    }
    const histograms = page.locator('figure.histograms svg');
    expect(await histograms.count()).toBe(2);
    expect(await histograms.first().locator('g.mark-rect path').count()).toBeGreaterThan(10);

    const meanRow = await page.locator('#auroc tr.mean td').allInnerTexts();
    expect(meanRow).toHaveLength(4);
    expect(meanRow[0]).toBe('mean');
    for (const cell of meanRow.slice(1)) expect(cell).toMatch(/^\d{2}\.\d$/);
    expect(await page.locator('#auroc tbody tr').first().locator('td').first().innerText()).toBe('multimodal/Trouser');
    expect(await page.locator('#auroc tbody tr').nth(1).locator('td').first().innerText()).toBe('multimodal/Bag <b>&</b>');
    await expect(page.locator('details.config').getAttribute('open')).resolves.toBeNull();

    const shot = join(dir, 'report.png');
    await page.screenshot({ path: shot, fullPage: true });
    expect(statSync(shot).size).toBeGreaterThan(50_000);
    // For a person (or a CI artifact) to look at: REPORT_SCREENSHOT_DIR keeps the page and its screenshot.
    const keep = process.env.REPORT_SCREENSHOT_DIR;
    if (keep) {
      mkdirSync(keep, { recursive: true });
      copyFileSync(shot, join(keep, 'report.png'));
      copyFileSync(reportPath, join(keep, 'report.html'));
    }

    expect(consoleErrors).toEqual([]);
    expect(pageErrors).toEqual([]);
    expect(failed).toEqual([]);
    expect(requests).toEqual([url]);
    await page.close();
  });
});
