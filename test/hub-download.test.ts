// The hub client against real HTTP servers on 127.0.0.1 that behave like huggingface.co: `resolve` URLs answer HEAD
// and GET with X-Repo-Commit; LFS files redirect (302) to a CDN origin with X-Linked-Etag (sha256) and X-Linked-Size;
// plain files answer directly with their git blob sha1 as ETag; blobs honour Range requests.
import { createHash, randomBytes } from 'node:crypto';
import { lstat, mkdir, mkdtemp, readdir, readFile, readlink, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from 'vitest';
import type { ProgressReporter, ProgressTask } from '@transformaly/core';
import { HubError, resolveHubCheckpoint } from '@transformaly/backbone-vit';
import { FakeHub, gitSha1, sha256 } from './fixtures/hub-server.js';

class RecordingProgress implements ProgressReporter {
  readonly tasks: { label: string; total?: number; ticked: number; done: boolean }[] = [];
  readonly warnings: string[] = [];
  task(label: string, total?: number): ProgressTask {
    const t = { label, total, ticked: 0, done: false };
    this.tasks.push(t);
    return {
      tick: (n = 1) => {
        t.ticked += n;
      },
      done: () => {
        t.done = true;
      },
    };
  }
  info(): void {}
  warn(message: string): void {
    this.warnings.push(message);
  }
}

const json = (value: unknown) => Buffer.from(JSON.stringify(value, null, 2));

/** Every file under `dir`, relative, recursively. */
async function listTree(dir: string): Promise<string[]> {
  const entries = await readdir(dir, { recursive: true, withFileTypes: true });
  return entries
    .filter((e) => !e.isDirectory())
    .map((e) => join(e.parentPath, e.name).slice(dir.length + 1))
    .sort();
}

let work: string;
let hub: FakeHub;
const weights = randomBytes(300_000);
const config = json({ model_type: 'vit', hidden_size: 192 });
const preprocessor = json({ image_mean: [0.5, 0.5, 0.5], image_std: [0.5, 0.5, 0.5], size: 224 });

beforeAll(async () => {
  work = await mkdtemp(join(tmpdir(), 'transformaly-hub-'));
});
afterAll(async () => {
  await rm(work, { recursive: true, force: true });
});
afterEach(() => {
  vi.unstubAllEnvs();
});

async function freshHub(): Promise<FakeHub> {
  const h = new FakeHub();
  await h.start();
  return h;
}

describe('resolveHubCheckpoint', () => {
  it('downloads into the hub cache layout, resuming with a Range request after the connection drops mid-file', async () => {
    hub = await freshHub();
    const repo = hub.addRepo('acme/vit-tiny', {
      'config.json': { bytes: config },
      'preprocessor_config.json': { bytes: preprocessor },
      'model.safetensors': { bytes: weights, lfs: true },
    });
    const sha = sha256(weights);
    hub.drops.set(sha, { bytes: 100_000, times: 1 });
    const cacheDir = join(work, 'cache1');
    const progress = new RecordingProgress();
    try {
      const snapshot = await resolveHubCheckpoint('acme/vit-tiny', {
        endpoint: hub.hubUrl,
        cacheDir,
        progress,
        token: 'hf_secret',
      });
      const root = join(cacheDir, 'models--acme--vit-tiny');
      expect(snapshot).toBe(join(root, 'snapshots', repo.commit));
      expect((await readFile(join(snapshot, 'model.safetensors'))).equals(weights)).toBe(true);
      expect((await readFile(join(snapshot, 'config.json'))).equals(config)).toBe(true);
      expect((await readFile(join(snapshot, 'preprocessor_config.json'))).equals(preprocessor)).toBe(true);

      // huggingface_hub's layout: blobs named by sha256 (LFS) / git sha1, relative links, refs/main -> commit.
      expect(await listTree(root)).toEqual(
        [
          `blobs/${sha}`,
          `blobs/${gitSha1(config)}`,
          `blobs/${gitSha1(preprocessor)}`,
          'refs/main',
          `snapshots/${repo.commit}/config.json`,
          `snapshots/${repo.commit}/model.safetensors`,
          `snapshots/${repo.commit}/preprocessor_config.json`,
        ].sort(),
      );
      expect((await lstat(join(snapshot, 'model.safetensors'))).isSymbolicLink()).toBe(true);
      expect(await readlink(join(snapshot, 'model.safetensors'))).toBe(join('..', '..', 'blobs', sha));
      expect(await readFile(join(root, 'refs', 'main'), 'utf8')).toBe(repo.commit);

      // The weights came from the CDN in two GETs, the second resuming where the first was cut.
      const gets = hub.log.filter((l) => l.method === 'GET' && l.path.includes(sha));
      expect(gets).toHaveLength(2);
      expect(gets.every((g) => g.server === 'cdn')).toBe(true);
      expect(gets[0].range).toBeUndefined();
      const resumedAt = Number(/^bytes=(\d+)-$/.exec(gets[1].range ?? '')?.[1]);
      expect(resumedAt).toBeGreaterThan(0);
      expect(resumedAt).toBeLessThanOrEqual(100_000);
      // Later files are fetched at the pinned commit, not at the moving branch.
      const heads = hub.log.filter((l) => l.server === 'hub' && l.method === 'HEAD').map((l) => l.path);
      expect(heads[0]).toBe('/acme/vit-tiny/resolve/main/config.json');
      expect(heads.slice(1).every((p) => p.includes(`/resolve/${repo.commit}/`))).toBe(true);
      // The token goes to the hub only, never to the CDN.
      expect(hub.log.filter((l) => l.server === 'hub').every((l) => l.authorization === 'Bearer hf_secret')).toBe(true);
      expect(hub.log.filter((l) => l.server === 'cdn').every((l) => l.authorization === undefined)).toBe(true);

      // Progress counts bytes, including the resumed part exactly once.
      const task = progress.tasks.find((t) => t.label.endsWith('model.safetensors'))!;
      expect(task).toMatchObject({ total: weights.length, ticked: weights.length, done: true });

      // A second run with the server up downloads nothing.
      const before = hub.log.length;
      expect(await resolveHubCheckpoint('acme/vit-tiny', { endpoint: hub.hubUrl, cacheDir })).toBe(snapshot);
      expect(hub.log.slice(before).filter((l) => l.method === 'GET')).toHaveLength(0);
    } finally {
      await hub.stop();
    }
  });

  it('serves a second run from the cache with the server stopped, online and offline', async () => {
    const cacheDir = join(work, 'cache1');
    const root = join(cacheDir, 'models--acme--vit-tiny');
    const commit = await readFile(join(root, 'refs', 'main'), 'utf8');
    const progress = new RecordingProgress();
    // The server from the previous test is stopped: its port refuses connections.
    const snapshot = await resolveHubCheckpoint('acme/vit-tiny', { endpoint: hub.hubUrl, cacheDir, progress });
    expect(snapshot).toBe(join(root, 'snapshots', commit));
    expect(progress.warnings.join('\n')).toMatch(/could not be reached.*using the cached snapshot/);
    expect((await readFile(join(snapshot, 'model.safetensors'))).equals(weights)).toBe(true);

    expect(await resolveHubCheckpoint('acme/vit-tiny', { endpoint: hub.hubUrl, cacheDir, offline: true })).toBe(snapshot);
    // Unreachable and not cached: the error says both, and what to do.
    await expect(resolveHubCheckpoint('acme/uncached', { endpoint: hub.hubUrl, cacheDir })).rejects.toThrow(
      /acme\/uncached \(revision main\) is not in the cache .*could not be reached.*Run once with network access/,
    );
    vi.stubEnv('HF_HUB_OFFLINE', '1');
    vi.stubEnv('HF_HUB_CACHE', cacheDir);
    expect(await resolveHubCheckpoint('acme/vit-tiny', { endpoint: 'http://192.0.2.1:9' })).toBe(snapshot);
    expect(await resolveHubCheckpoint('acme/vit-tiny', { revision: commit })).toBe(snapshot);

    const missing = resolveHubCheckpoint('acme/other', {});
    await expect(missing).rejects.toThrow(HubError);
    await expect(missing).rejects.toThrow(/acme\/other \(revision main\) is not in the cache .*offline mode is on/);
    await expect(missing).rejects.toThrow(/Run once with network access.*HF_ENDPOINT.*local folder/);
  });

  it('keeps a partial download across runs and resumes it with a Range header', async () => {
    const h = await freshHub();
    try {
      h.addRepo('acme/vit-resume', { 'config.json': { bytes: config }, 'model.safetensors': { bytes: weights, lfs: true } });
      const sha = sha256(weights);
      h.drops.set(sha, { bytes: 120_000, times: 1 });
      const cacheDir = join(work, 'cache-resume');
      const first = resolveHubCheckpoint('acme/vit-resume', { endpoint: h.hubUrl, cacheDir, retries: 0 });
      await expect(first).rejects.toThrow(/downloading acme\/vit-resume\/model\.safetensors failed after 1 attempts/);
      await expect(first).rejects.toThrow(/running again resumes/);
      const incomplete = join(cacheDir, 'models--acme--vit-resume', 'blobs', `${sha}.incomplete`);
      const kept = (await stat(incomplete)).size;
      expect(kept).toBeGreaterThan(0);
      expect(kept).toBeLessThanOrEqual(120_000);
      expect((await readFile(incomplete)).equals(weights.subarray(0, kept))).toBe(true);

      const snapshot = await resolveHubCheckpoint('acme/vit-resume', { endpoint: h.hubUrl, cacheDir, retries: 0 });
      const gets = h.log.filter((l) => l.method === 'GET' && l.path.includes(sha));
      expect(gets.map((g) => g.range)).toEqual([undefined, `bytes=${kept}-`]);
      expect((await readFile(join(snapshot, 'model.safetensors'))).equals(weights)).toBe(true);
      expect(await readdir(join(cacheDir, 'models--acme--vit-resume', 'blobs'))).not.toContain(`${sha}.incomplete`);
    } finally {
      await h.stop();
    }
  });

  it('refuses bytes that do not match the advertised sha256 and leaves nothing that looks complete', async () => {
    const h = await freshHub();
    try {
      h.addRepo('acme/vit-corrupt', { 'config.json': { bytes: config }, 'model.safetensors': { bytes: weights, lfs: true } });
      const sha = sha256(weights);
      h.corrupt.add(sha);
      // Also cut the first transfer, so the corrupt file is assembled from a resumed download.
      h.drops.set(sha, { bytes: 50_000, times: 1 });
      const cacheDir = join(work, 'cache-corrupt');
      const run = resolveHubCheckpoint('acme/vit-corrupt', { endpoint: h.hubUrl, cacheDir });
      await expect(run).rejects.toThrow(HubError);
      await expect(run).rejects.toThrow(
        new RegExp(`acme/vit-corrupt/model\\.safetensors: the downloaded bytes have sha256 [0-9a-f]{64} but the hub advertised ${sha}`),
      );
      const root = join(cacheDir, 'models--acme--vit-corrupt');
      const files = await listTree(root);
      expect(files.filter((f) => f.includes(sha))).toEqual([]);
      expect(files.filter((f) => f.endsWith('model.safetensors'))).toEqual([]);
      expect(files).not.toContain('refs/main');

      // Once the server is fixed, the same cache downloads it correctly.
      h.corrupt.clear();
      const snapshot = await resolveHubCheckpoint('acme/vit-corrupt', { endpoint: h.hubUrl, cacheDir });
      expect((await readFile(join(snapshot, 'model.safetensors'))).equals(weights)).toBe(true);
    } finally {
      await h.stop();
    }
  });

  it('names the repo and file when something is missing, and skips a missing optional file', async () => {
    const h = await freshHub();
    try {
      h.addRepo('acme/no-weights', { 'config.json': { bytes: config } });
      h.addRepo('acme/pickle-only', { 'config.json': { bytes: config }, 'pytorch_model.bin': { bytes: weights, lfs: true } });
      h.addRepo('acme/no-config', { 'model.safetensors': { bytes: weights, lfs: true } });
      const repo = h.addRepo('acme/no-preprocessor', {
        'config.json': { bytes: config },
        'model.safetensors': { bytes: weights, lfs: true },
      });
      const cacheDir = join(work, 'cache-missing');
      const opts = { endpoint: h.hubUrl, cacheDir };
      await expect(resolveHubCheckpoint('acme/no-weights', opts)).rejects.toThrow(
        /acme\/no-weights \(revision main\) has neither model\.safetensors nor model\.safetensors\.index\.json/,
      );
      await expect(resolveHubCheckpoint('acme/pickle-only', opts)).rejects.toThrow(
        /only pickle weights \(pytorch_model\.bin\).*convert the weights to safetensors.*\n.*torch\.load\("pytorch_model\.bin", map_location="cpu", weights_only=True\)/s,
      );
      await expect(resolveHubCheckpoint('acme/no-config', opts)).rejects.toThrow(
        /acme\/no-config \(revision main\) has no file config\.json/,
      );
      await expect(resolveHubCheckpoint('acme/absent', opts)).rejects.toThrow(/repository acme\/absent not found/);
      await expect(resolveHubCheckpoint('acme/no-preprocessor', { ...opts, revision: 'v2' })).rejects.toThrow(
        /acme\/no-preprocessor has no revision 'v2'/,
      );
      await expect(resolveHubCheckpoint('../etc', opts)).rejects.toThrow(/not a Hugging Face repo id/);

      const snapshot = await resolveHubCheckpoint('acme/no-preprocessor', opts);
      expect((await readdir(snapshot)).sort()).toEqual(['config.json', 'model.safetensors']);
      // Its absence is recorded, as huggingface_hub does, so offline runs need not guess.
      const marker = join(cacheDir, 'models--acme--no-preprocessor', '.no_exist', repo.commit, 'preprocessor_config.json');
      expect((await stat(marker)).isFile()).toBe(true);
      expect(await resolveHubCheckpoint('acme/no-preprocessor', { ...opts, offline: true })).toBe(snapshot);
    } finally {
      await h.stop();
    }
  });

  it('downloads a sharded checkpoint (index + 2 shards) through same-origin redirects, then serves it offline', async () => {
    const h = await freshHub();
    h.sameOriginBlobs = true;
    const shard1 = randomBytes(70_000);
    const shard2 = randomBytes(50_000);
    const index = json({
      metadata: { total_size: shard1.length + shard2.length },
      weight_map: {
        'embeddings.cls_token': 'model-00001-of-00002.safetensors',
        'encoder.layer.0.attention.attention.query.weight': 'model-00001-of-00002.safetensors',
        'layernorm.weight': 'model-00002-of-00002.safetensors',
      },
    });
    const repo = h.addRepo('acme/vit-sharded', {
      'config.json': { bytes: config },
      'model.safetensors.index.json': { bytes: index },
      'model-00001-of-00002.safetensors': { bytes: shard1, lfs: true },
      'model-00002-of-00002.safetensors': { bytes: shard2, lfs: true },
    });
    const cacheDir = join(work, 'cache-sharded');
    let snapshot: string;
    try {
      vi.stubEnv('HF_ENDPOINT', h.hubUrl);
      vi.stubEnv('HF_HOME', join(work, 'hf-home'));
      vi.stubEnv('HF_HUB_CACHE', '');
      vi.stubEnv('HF_HUB_OFFLINE', '');
      snapshot = await resolveHubCheckpoint('acme/vit-sharded', {});
      expect(snapshot).toBe(join(work, 'hf-home', 'hub', 'models--acme--vit-sharded', 'snapshots', repo.commit));
      expect((await readdir(snapshot)).sort()).toEqual([
        'config.json',
        'model-00001-of-00002.safetensors',
        'model-00002-of-00002.safetensors',
        'model.safetensors.index.json',
      ]);
      expect((await readFile(join(snapshot, 'model-00001-of-00002.safetensors'))).equals(shard1)).toBe(true);
      expect((await readFile(join(snapshot, 'model-00002-of-00002.safetensors'))).equals(shard2)).toBe(true);
      expect(h.log.some((l) => l.server === 'cdn')).toBe(false);
      // Explicit cacheDir wins over HF_HOME.
      const elsewhere = await resolveHubCheckpoint('acme/vit-sharded', { cacheDir });
      expect(elsewhere.startsWith(cacheDir)).toBe(true);
    } finally {
      await h.stop();
    }
    expect(await resolveHubCheckpoint('acme/vit-sharded', { offline: true })).toBe(snapshot);
    // A cached snapshot missing a shard is reported by name, not half-used.
    await rm(join(snapshot, 'model-00002-of-00002.safetensors'));
    await expect(resolveHubCheckpoint('acme/vit-sharded', { offline: true })).rejects.toThrow(
      /lacks model-00002-of-00002\.safetensors/,
    );
  });

  it('refuses a revision that is not a branch, tag or commit name before any request, and writes nothing', async () => {
    const h = await freshHub();
    try {
      h.addRepo('acme/vit', { 'config.json': { bytes: config }, 'model.safetensors': { bytes: weights, lfs: true } });
      const base = join(work, 'revision-escape');
      const cacheDir = join(base, 'cache');
      await mkdir(cacheDir, { recursive: true });
      const victim = join(base, 'victim.txt');
      await writeFile(victim, 'precious');
      for (const revision of ['../../../victim.txt', '..', 'main/../../x', '/etc/passwd', 'a b', 'refs/.hidden', 'v1.lock', '']) {
        await expect(resolveHubCheckpoint('acme/vit', { endpoint: h.hubUrl, cacheDir, revision }), revision).rejects.toThrow(
          /revision .* is not a branch, tag or commit name/,
        );
        // Offline too: the revision would name a ref file in the cache.
        await expect(resolveHubCheckpoint('acme/vit', { cacheDir, revision, offline: true }), revision).rejects.toThrow(/is not a branch, tag or commit name/);
      }
      expect(h.log).toEqual([]);
      expect(await readFile(victim, 'utf8')).toBe('precious');
      expect(await listTree(base)).toEqual(['victim.txt']);
    } finally {
      await h.stop();
    }
  });

  it("takes a ref with '/' (a pull request's refs/pr/1) and keeps it under the cache's refs folder", async () => {
    const h = await freshHub();
    try {
      const repo = h.addRepo('acme/vit-pr', { 'config.json': { bytes: config }, 'model.safetensors': { bytes: weights, lfs: true } });
      repo.refs.add('refs/pr/1');
      const cacheDir = join(work, 'cache-pr');
      const snapshot = await resolveHubCheckpoint('acme/vit-pr', { endpoint: h.hubUrl, cacheDir, revision: 'refs/pr/1' });
      expect(snapshot).toBe(join(cacheDir, 'models--acme--vit-pr', 'snapshots', repo.commit));
      // huggingface_hub's layout: refs/<revision>, the revision's '/' as folders.
      expect(await readFile(join(cacheDir, 'models--acme--vit-pr', 'refs', 'refs', 'pr', '1'), 'utf8')).toBe(repo.commit);
      expect(await resolveHubCheckpoint('acme/vit-pr', { cacheDir, revision: 'refs/pr/1', offline: true })).toBe(snapshot);
    } finally {
      await h.stop();
    }
  });

  it('refuses a shard name from the remote index that would leave the snapshot folder', async () => {
    const h = await freshHub();
    try {
      const index = json({ weight_map: { 'layernorm.weight': '../../../escaped.safetensors' } });
      h.addRepo('acme/vit-evil', { 'config.json': { bytes: config }, 'model.safetensors.index.json': { bytes: index } });
      const cacheDir = join(work, 'cache-evil');
      await expect(resolveHubCheckpoint('acme/vit-evil', { endpoint: h.hubUrl, cacheDir })).rejects.toThrow(
        /refusing the file name '\.\.\/\.\.\/\.\.\/escaped\.safetensors' \(it would leave the snapshot folder\)/,
      );
      expect(h.log.some((l) => l.path.includes('escaped'))).toBe(false);
      expect((await listTree(work)).some((f) => f.includes('escaped'))).toBe(false);
    } finally {
      await h.stop();
    }
  });
});
