// `transformaly serve` as a process (the real bin, built by `tsc -b`): it serves the detector, and SIGTERM stops it
// without losing an accepted request: every request it had accepted is answered with its scores, then it exits 0.
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { beforeAll, describe, expect, it } from 'vitest';
import { fitTinyDetector, offlineScores, repo, writeTestImages, type OfflineScores, type TestImage } from './fixtures/serve.js';

const bin = join(repo, 'cli', 'bin', 'transformaly.js');

let detectorDir = '';
let images: TestImage[] = [];
let offline: Map<string, OfflineScores>;

beforeAll(async () => {
  if (!existsSync(join(repo, 'cli', 'dist', 'main.js'))) throw new Error('cli/dist is missing: run "npx tsc -b" (npm test does it first)');
  detectorDir = await fitTinyDetector();
  images = await writeTestImages(6);
  ({ scores: offline } = await offlineScores(detectorDir, images));
});

interface Served {
  child: ChildProcess;
  /** Every JSON log line so far. */
  logs: { msg: string; level: number }[];
  stderr: () => string;
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  /** Resolves with the first log line that `match` accepts. */
  waitForLog(match: (msg: string) => boolean): Promise<string>;
}

function serve(args: string[]): Served {
  const child = spawn(process.execPath, [bin, 'serve', ...args], { cwd: repo, env: { ...process.env, DEBUG: '' }, stdio: ['ignore', 'pipe', 'pipe'] });
  const logs: Served['logs'] = [];
  const watchers: { match: (msg: string) => boolean; resolve: (msg: string) => void }[] = [];
  createInterface({ input: child.stdout! }).on('line', (line) => {
    const entry = JSON.parse(line) as { msg: string; level: number };
    logs.push(entry);
    for (const w of [...watchers]) {
      if (w.match(entry.msg)) {
        watchers.splice(watchers.indexOf(w), 1);
        w.resolve(entry.msg);
      }
    }
  });
  let stderr = '';
  child.stderr!.on('data', (chunk) => (stderr += chunk));
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) => child.on('exit', (code, signal) => resolve({ code, signal })));
  return {
    child,
    logs,
    stderr: () => stderr,
    exited,
    waitForLog: (match) => {
      const seen = logs.find((l) => match(l.msg));
      if (seen) return Promise.resolve(seen.msg);
      return new Promise((resolve, reject) => {
        watchers.push({ match, resolve });
        void exited.then(({ code }) => reject(new Error(`transformaly serve exited (${code}) before logging it:\n${stderr}`)));
      });
    },
  };
}

async function queued(url: string): Promise<number> {
  const text = await (await fetch(`${url}/metrics`)).text();
  return Number(/^transformaly_queue_images (\d+)$/m.exec(text)?.[1]);
}

describe('transformaly serve (process)', () => {
  it('on SIGTERM answers every request it accepted, with its scores, then exits 0', async () => {
    // A pass waits up to ten minutes for company, so the requests are surely still queued when SIGTERM comes.
    const served = serve(['--detector', detectorDir, '--port', '0', '--batch-size', '16', '--batch-wait', '600000']);
    try {
      const listening = await served.waitForLog((msg) => msg.startsWith('Server listening at http://127.0.0.1:'));
      const url = listening.slice('Server listening at '.length);
      await served.waitForLog((msg) => msg.startsWith('detector ready'));
      expect(served.logs.some((l) => l.level === 40 && /UNTRAINED backbone/.test(l.msg))).toBe(true);

      const answers = images.map((image) =>
        fetch(`${url}/v1/score`, { method: 'POST', body: image.bytes, headers: { 'content-type': image.type } }).then(async (r) => ({
          status: r.status,
          body: (await r.json()) as { images: { scores: { combined: number }; anomalous: boolean }[] },
        })),
      );
      const deadline = Date.now() + 20_000;
      while ((await queued(url)) < images.length) {
        if (Date.now() > deadline) throw new Error('the requests never all reached the queue');
        await new Promise((resolve) => setTimeout(resolve, 20));
      }

      served.child.kill('SIGTERM');
      const results = await Promise.all(answers);
      results.forEach(({ status, body }, i) => {
        expect(status, JSON.stringify(body)).toBe(200);
        expect(body.images[0].scores.combined).toBe(offline.get(images[i].name)!.combined);
        expect(body.images[0].anomalous).toBe(offline.get(images[i].name)!.anomalous);
      });
      expect(await served.exited).toEqual({ code: 0, signal: null });
      const messages = served.logs.map((l) => l.msg);
      expect(messages).toContain('SIGTERM: no longer accepting requests; finishing those in flight');
      expect(messages.at(-1)).toBe('stopped');
      await expect(fetch(`${url}/healthz`)).rejects.toThrow();
    } finally {
      served.child.kill('SIGKILL');
    }
  });

  it('SIGTERM as soon as it listens (the detector possibly still loading) also exits 0', async () => {
    const served = serve(['--detector', detectorDir, '--port', '0']);
    await served.waitForLog((msg) => msg.startsWith('Server listening at '));
    served.child.kill('SIGTERM');
    expect(await served.exited).toEqual({ code: 0, signal: null });
    expect(served.logs.at(-1)?.msg).toBe('stopped');
  });

  it('exits 1 with the reason when the detector cannot be opened', async () => {
    const served = serve(['--detector', join(detectorDir, 'nowhere'), '--port', '0']);
    const { code } = await served.exited;
    expect(code).toBe(1);
    expect(served.stderr()).toMatch(/^transformaly: .*nowhere/m);
  });
});
