// Downloads checkpoints from the Hugging Face hub into its standard cache, so a model fetched here is shared with
// huggingface_hub / transformers / timm and vice versa:
//   <cache>/models--{org}--{name}/blobs/<etag>            file contents, named by sha256 (LFS) or git blob sha1
//   <cache>/models--{org}--{name}/snapshots/<commit>/<f>  relative links to the blobs (copies where links fail)
//   <cache>/models--{org}--{name}/refs/<revision>         the commit a branch or tag pointed at
//   <cache>/models--{org}--{name}/.no_exist/<commit>/<f>  files the hub said do not exist (optional ones)
import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { copyFile, lstat, mkdir, open, readFile, readlink, rename, rm, stat, symlink, writeFile } from 'node:fs/promises';
import { homedir } from 'node:os';
import { dirname, join, relative, resolve } from 'node:path';
import { resolveInside, SAFE_NAME as SAFE_NAME_PATTERN, writeFully, type ProgressReporter } from '@transformaly/core';
import { conversionSnippet } from './pickle.js';

export interface HubOptions {
  /** Cache root; default `$HF_HUB_CACHE`, else `$HF_HOME/hub`, else `~/.cache/huggingface/hub`. */
  cacheDir?: string;
  /** Use only the cache; default from `HF_HUB_OFFLINE`. */
  offline?: boolean;
  /** Hub URL; default `$HF_ENDPOINT`, else https://huggingface.co. */
  endpoint?: string;
  /** Branch, tag or commit; default `main`. */
  revision?: string;
  progress?: ProgressReporter;
  /** Access token for gated or private repos; default `$HF_TOKEN`. */
  token?: string;
  /** How many times a broken transfer is resumed before giving up (the partial file is kept either way); default 4. */
  retries?: number;
}

export class HubError extends Error {
  override readonly name: string = 'HubError';
}

/** The hub did not answer at all (refused, DNS, timeout): the one case where a cached snapshot may stand in. */
class HubUnreachable extends HubError {
  override readonly name = 'HubUnreachable';
}

const DEFAULT_ENDPOINT = 'https://huggingface.co';
const HEAD_TIMEOUT_MS = 10_000;
const WEIGHTS = 'model.safetensors';
const WEIGHTS_INDEX = 'model.safetensors.index.json';
const SAFE_NAME = new RegExp(SAFE_NAME_PATTERN);

function envTruthy(value: string | undefined): boolean {
  return value !== undefined && ['1', 'on', 'yes', 'true'].includes(value.trim().toLowerCase());
}

/** The hub cache root that huggingface_hub would use in this environment. */
export function hubCacheDir(env: NodeJS.ProcessEnv = process.env): string {
  if (env.HF_HUB_CACHE) return env.HF_HUB_CACHE;
  if (env.HUGGINGFACE_HUB_CACHE) return env.HUGGINGFACE_HUB_CACHE;
  if (env.HF_HOME) return join(env.HF_HOME, 'hub');
  return join(env.XDG_CACHE_HOME || join(homedir(), '.cache'), 'huggingface', 'hub');
}

function checkRepoId(repoId: string): void {
  const parts = repoId.split('/');
  if (parts.length > 2 || parts.some((p) => !SAFE_NAME.test(p) || p.includes('..'))) {
    throw new HubError(`hub: '${repoId}' is not a Hugging Face repo id (expected 'org/name')`);
  }
}

const COMMIT = /^[0-9a-f]{40}$/;

/**
 * A revision is a 40-hex commit or a git ref name (a branch or tag, possibly with '/' as in `refs/pr/1`), checked by
 * git's rules before it is sent anywhere or becomes a path under `refs/` in the cache.
 */
function checkRevision(repoId: string, revision: string): void {
  if (COMMIT.test(revision)) return;
  const parts = revision.split('/');
  const bad =
    revision.length === 0 ||
    revision.length > 255 ||
    revision === '@' ||
    revision.includes('..') ||
    revision.includes('@{') ||
    /[\x00-\x20\x7f~^:?*[\\]/.test(revision) ||
    revision.endsWith('.') ||
    parts.some((p) => p === '' || p.startsWith('.') || p.endsWith('.lock'));
  if (bad) {
    throw new HubError(
      `hub: ${repoId}: revision ${JSON.stringify(revision)} is not a branch, tag or commit name (a 40-hex commit, or a git ref ` +
        "name: parts separated by '/', none empty or starting with '.', no '..', spaces or any of ~^:?*[\\)",
    );
  }
}

/** A repo-relative file name from the hub (e.g. a shard listed in an index): no absolute paths, no '..'. */
function checkRepoFile(repoId: string, file: string): void {
  const parts = file.split('/');
  if (file.startsWith('/') || file.includes('\\') || parts.some((p) => p === '' || p === '.' || p === '..')) {
    throw new HubError(`hub: ${repoId}: refusing the file name '${file}' (it would leave the snapshot folder)`);
  }
}

function normalizeEtag(etag: string | null): string | undefined {
  if (!etag) return undefined;
  return etag.replace(/^W\//, '').replace(/^"|"$/g, '');
}

function networkReason(error: unknown): string {
  const e = error as Error & { cause?: { code?: string; message?: string } };
  const cause = e.cause?.code ?? e.cause?.message;
  return cause ? `${e.message} (${cause})` : e.message;
}

interface FileMeta {
  commit: string;
  etag: string;
  size: number | undefined;
  /** Where the bytes are served from after the hub's redirects (a CDN for LFS files). */
  downloadUrl: string;
}

type Lookup = { found: true; meta: FileMeta } | { found: false; status: number; errorCode?: string; commit?: string };

class HubClient {
  readonly endpoint: string;
  private readonly origin: string;
  private readonly token: string | undefined;

  constructor(endpoint: string, token: string | undefined) {
    this.endpoint = endpoint.replace(/\/+$/, '');
    try {
      this.origin = new URL(this.endpoint).origin;
    } catch {
      throw new HubError(`hub: endpoint '${endpoint}' is not a URL (check the endpoint option or HF_ENDPOINT)`);
    }
    this.token = token;
  }

  fileUrl(repoId: string, revision: string, file: string): string {
    const path = file.split('/').map(encodeURIComponent).join('/');
    return `${this.endpoint}/${repoId}/resolve/${encodeURIComponent(revision)}/${path}`;
  }

  /**
   * Follows redirects by hand so the token never leaves the hub's origin, and so the hub's own headers are seen on
   * the redirect that carries them. With `sameOriginOnly` (metadata lookups, as huggingface_hub does) a redirect to
   * another origin, i.e. the CDN holding LFS files, is not followed: its Location is where the bytes are. Returns
   * every hop's response and the URL of the last one.
   */
  async request(url: string, init: RequestInit, sameOriginOnly = false): Promise<{ hops: Response[]; url: string }> {
    const hops: Response[] = [];
    let current = url;
    for (let hop = 0; hop < 10; hop++) {
      const headers = new Headers(init.headers);
      headers.set('accept-encoding', 'identity');
      headers.set('user-agent', 'transformaly');
      if (this.token && new URL(current).origin === this.origin) headers.set('authorization', `Bearer ${this.token}`);
      const response = await fetch(current, { ...init, headers, redirect: 'manual' });
      hops.push(response);
      const location = response.headers.get('location');
      if (response.status < 300 || response.status >= 400 || !location) return { hops, url: current };
      const next = new URL(location, current);
      if (sameOriginOnly && next.origin !== new URL(current).origin) return { hops, url: next.toString() };
      if (init.method !== 'HEAD') await response.body?.cancel();
      current = next.toString();
    }
    throw new HubError(`hub: too many redirects starting from ${url}`);
  }

  async lookup(repoId: string, revision: string, file: string): Promise<Lookup> {
    const url = this.fileUrl(repoId, revision, file);
    let answer: { hops: Response[]; url: string };
    try {
      answer = await this.request(url, { method: 'HEAD', signal: AbortSignal.timeout(HEAD_TIMEOUT_MS) }, true);
    } catch (error) {
      if (error instanceof HubError) throw error;
      throw new HubUnreachable(`hub: ${this.endpoint} could not be reached: ${networkReason(error)}`, { cause: error });
    }
    const { hops, url: downloadUrl } = answer;
    const last = hops[hops.length - 1];
    const redirected = last.status >= 300 && last.status < 400;
    let commit: string | undefined;
    let etag: string | undefined;
    let size: number | undefined;
    for (const response of hops) {
      commit ??= response.headers.get('x-repo-commit') ?? undefined;
      etag ??= normalizeEtag(response.headers.get('x-linked-etag'));
      const linkedSize = response.headers.get('x-linked-size');
      if (size === undefined && linkedSize !== null) size = Number(linkedSize);
    }
    if (!last.ok && !redirected) {
      return { found: false, status: last.status, errorCode: last.headers.get('x-error-code') ?? undefined, commit };
    }
    // Without an X-Linked-Etag the file is a plain git file served directly: its ETag is the git blob sha1.
    if (!redirected) {
      etag ??= normalizeEtag(last.headers.get('etag'));
      const length = last.headers.get('content-length');
      if (size === undefined && length !== null) size = Number(length);
    }
    if (commit === undefined) {
      throw new HubError(
        `hub: ${url} answered without an X-Repo-Commit header, so ${this.endpoint} does not look like a Hugging Face hub ` +
          '(check the endpoint option or HF_ENDPOINT)',
      );
    }
    if (etag === undefined) throw new HubError(`hub: ${url} answered without an ETag; cannot tell which version it is`);
    if (!SAFE_NAME.test(commit)) throw new HubError(`hub: ${url} sent an unusable X-Repo-Commit '${commit}'`);
    return { found: true, meta: { commit, etag, size: Number.isFinite(size) ? size : undefined, downloadUrl } };
  }
}

/** sha256 for LFS etags (64 hex), git's blob sha1 for plain files (40 hex); other etags can only be checked by size. */
async function verifyBlob(path: string, etag: string): Promise<{ ok: boolean; actual?: string; algorithm?: string }> {
  let algorithm: 'sha256' | 'sha1';
  if (/^[0-9a-f]{64}$/i.test(etag)) algorithm = 'sha256';
  else if (/^[0-9a-f]{40}$/i.test(etag)) algorithm = 'sha1';
  else return { ok: true };
  const hash = createHash(algorithm);
  if (algorithm === 'sha1') hash.update(`blob ${(await stat(path)).size}\0`);
  for await (const chunk of createReadStream(path)) hash.update(chunk as Buffer);
  const actual = hash.digest('hex');
  return { ok: actual === etag.toLowerCase(), actual, algorithm: algorithm === 'sha1' ? 'git sha1' : 'sha256' };
}

async function exists(path: string): Promise<boolean> {
  try {
    await stat(path);
    return true;
  } catch {
    return false;
  }
}

async function fileSize(path: string): Promise<number> {
  try {
    return (await stat(path)).size;
  } catch {
    return 0;
  }
}

/** Points `pointer` at `blob` with a relative symlink (as huggingface_hub does), or copies where links are refused. */
async function linkSnapshot(pointer: string, blob: string): Promise<void> {
  await mkdir(dirname(pointer), { recursive: true });
  const target = relative(dirname(pointer), blob);
  try {
    if ((await lstat(pointer)).isSymbolicLink() && (await readlink(pointer)) === target) return;
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== 'ENOENT') throw error;
  }
  const tmp = `${pointer}.${process.pid}.tmp`;
  await rm(tmp, { force: true });
  try {
    await symlink(target, tmp);
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    if (code !== 'EPERM' && code !== 'EACCES' && code !== 'ENOTSUP') throw error;
    await copyFile(blob, tmp);
  }
  await rename(tmp, pointer);
}

/** Paths in the cache of one repo; each is checked to stay under its folder, whatever the hub or the user sent. */
class RepoCache {
  readonly root: string;
  constructor(cacheDir: string, repoId: string) {
    this.root = resolveInside(cacheDir, `models--${repoId.replace('/', '--')}`);
  }
  blob(etag: string): string {
    return resolveInside(join(this.root, 'blobs'), etag);
  }
  snapshot(commit: string): string {
    return resolveInside(join(this.root, 'snapshots'), commit);
  }
  snapshotFile(commit: string, file: string): string {
    return resolveInside(this.snapshot(commit), ...file.split('/'));
  }
  ref(revision: string): string {
    return resolveInside(join(this.root, 'refs'), ...revision.split('/'));
  }
  noExist(commit: string, file: string): string {
    return resolveInside(join(this.root, '.no_exist'), commit, ...file.split('/'));
  }
  async commitOf(revision: string): Promise<string | undefined> {
    try {
      const commit = (await readFile(this.ref(revision), 'utf8')).trim();
      if (SAFE_NAME.test(commit)) return commit;
    } catch {
      // Fall through: a full commit hash names its snapshot directly.
    }
    if (/^[0-9a-f]{40}$/.test(revision) && (await exists(this.snapshot(revision)))) return revision;
    return undefined;
  }
}

/**
 * Makes a hub checkpoint available locally and returns its snapshot folder, holding `config.json`,
 * `preprocessor_config.json` when the repo has one, and `model.safetensors` or `model.safetensors.index.json` with its
 * shards. Files already in the cache are not downloaded again; an interrupted download resumes where it stopped.
 */
export async function resolveHubCheckpoint(repoId: string, options: HubOptions = {}): Promise<string> {
  checkRepoId(repoId);
  const revision = options.revision ?? 'main';
  checkRevision(repoId, revision);
  const cacheDir = options.cacheDir ?? hubCacheDir();
  const cache = new RepoCache(cacheDir, repoId);
  const offline = options.offline ?? envTruthy(process.env.HF_HUB_OFFLINE);
  const endpoint = options.endpoint ?? process.env.HF_ENDPOINT ?? DEFAULT_ENDPOINT;
  const progress = options.progress;

  if (offline) return fromCache(repoId, revision, cache, 'offline mode is on (the offline option or HF_HUB_OFFLINE)');

  const client = new HubClient(endpoint, options.token ?? (process.env.HF_TOKEN || undefined));
  const retries = options.retries ?? 4;

  // The first lookup pins the revision to a commit; every later file is fetched at that commit, so a push to the
  // branch during the download cannot mix two versions.
  let config: Lookup;
  try {
    config = await client.lookup(repoId, revision, 'config.json');
  } catch (error) {
    if (!(error instanceof HubUnreachable)) throw error;
    const reason = error.message.replace(/^hub: /, '');
    const snapshot = await fromCache(repoId, revision, cache, reason).catch((cacheError: HubError) => {
      throw new HubError(cacheError.message, { cause: error });
    });
    progress?.warn(`${reason}; using the cached snapshot of ${repoId} at ${snapshot}`);
    return snapshot;
  }
  if (!config.found) throw notFound(repoId, revision, 'config.json', config);
  const commit = config.meta.commit;
  const snapshot = cache.snapshot(commit);
  const context: FetchContext = { repoId, commit, cache, client, progress, retries };

  await materialize(context, 'config.json', config.meta);
  await fetchOptional(context, 'preprocessor_config.json');
  if (!(await fetchOptional(context, WEIGHTS))) {
    if (!(await fetchOptional(context, WEIGHTS_INDEX))) {
      throw await missingWeights(context, revision);
    }
    for (const shard of await shardsOf(join(snapshot, WEIGHTS_INDEX), repoId)) {
      const found = await client.lookup(repoId, commit, shard);
      if (!found.found) throw notFound(repoId, commit, shard, found);
      await materialize(context, shard, found.meta);
    }
  }
  if (revision !== commit) {
    await mkdir(dirname(cache.ref(revision)), { recursive: true });
    await writeFile(cache.ref(revision), commit);
  }
  return snapshot;
}

interface FetchContext {
  repoId: string;
  commit: string;
  cache: RepoCache;
  client: HubClient;
  progress: ProgressReporter | undefined;
  retries: number;
}

/** Fetches a file the repo may lack; records its absence like huggingface_hub so offline runs know it too. */
async function fetchOptional(context: FetchContext, file: string): Promise<boolean> {
  const found = await context.client.lookup(context.repoId, context.commit, file);
  if (found.found) {
    await materialize(context, file, found.meta);
    return true;
  }
  if (found.status !== 404 || (found.errorCode !== undefined && found.errorCode !== 'EntryNotFound')) {
    throw notFound(context.repoId, context.commit, file, found);
  }
  const marker = context.cache.noExist(context.commit, file);
  await mkdir(dirname(marker), { recursive: true });
  await writeFile(marker, '');
  return false;
}

function notFound(repoId: string, revision: string, file: string, lookup: Extract<Lookup, { found: false }>): HubError {
  const where = `${repoId} (revision ${revision})`;
  switch (lookup.status === 404 ? lookup.errorCode : String(lookup.status)) {
    case 'RepoNotFound':
      return new HubError(`hub: repository ${repoId} not found (or it is private: set HF_TOKEN)`);
    case 'RevisionNotFound':
      return new HubError(`hub: ${repoId} has no revision '${revision}'`);
    case '401':
    case '403':
      return new HubError(
        `hub: access to ${file} in ${where} was refused (HTTP ${lookup.status}); the repo is gated or private: accept its ` +
          'terms on the hub and set HF_TOKEN to a token that may read it',
      );
    default:
      return lookup.status === 404
        ? new HubError(`hub: ${where} has no file ${file}`)
        : new HubError(`hub: looking up ${file} in ${where} failed with HTTP ${lookup.status}`);
  }
}

async function missingWeights(context: FetchContext, revision: string): Promise<HubError> {
  const pickles: string[] = [];
  for (const file of ['pytorch_model.bin', 'model.pth', 'pytorch_model.bin.index.json']) {
    const found = await context.client.lookup(context.repoId, context.commit, file);
    if (found.found) pickles.push(file);
  }
  const single = pickles.find((file) => !file.endsWith('.index.json'));
  const hint = pickles.length
    ? ` It has only pickle weights (${pickles.join(', ')}), which are not loaded because unpickling can run arbitrary code. ` +
      'Download the repo, convert the weights to safetensors once in Python (pip install torch safetensors), and point the ' +
      "config's checkpoint at the folder holding config.json and model.safetensors" +
      (single
        ? `:\n${conversionSnippet(single, 'model.safetensors')}`
        : '; load every shard that pytorch_model.bin.index.json lists with torch.load(shard, map_location="cpu", weights_only=True) into one dict and save it with safetensors\' save_file.')
    : '';
  return new HubError(`hub: ${context.repoId} (revision ${revision}) has neither ${WEIGHTS} nor ${WEIGHTS_INDEX}.${hint}`);
}

async function shardsOf(indexPath: string, repoId: string): Promise<string[]> {
  let index: unknown;
  try {
    index = JSON.parse(await readFile(indexPath, 'utf8'));
  } catch (error) {
    throw new HubError(`hub: ${repoId}/${WEIGHTS_INDEX} is not valid JSON: ${(error as Error).message}`);
  }
  const weightMap = (index as { weight_map?: unknown }).weight_map;
  if (typeof weightMap !== 'object' || weightMap === null || Array.isArray(weightMap)) {
    throw new HubError(`hub: ${repoId}/${WEIGHTS_INDEX} has no weight_map object`);
  }
  const shards = [...new Set(Object.values(weightMap as Record<string, unknown>))];
  for (const shard of shards) {
    if (typeof shard !== 'string') throw new HubError(`hub: ${repoId}/${WEIGHTS_INDEX}: weight_map values must be file names`);
    checkRepoFile(repoId, shard);
  }
  return (shards as string[]).sort();
}

/** Ensures `snapshots/<commit>/<file>` exists, downloading its blob unless the cache already has it. */
async function materialize(context: FetchContext, file: string, meta: FileMeta): Promise<void> {
  checkRepoFile(context.repoId, file);
  if (!SAFE_NAME.test(meta.etag)) throw new HubError(`hub: ${context.repoId}/${file}: unusable ETag '${meta.etag}'`);
  const blob = context.cache.blob(meta.etag);
  if (!(await exists(blob))) await download(context, file, meta, blob);
  await linkSnapshot(context.cache.snapshotFile(context.commit, file), blob);
}

async function download(context: FetchContext, file: string, meta: FileMeta, blob: string): Promise<void> {
  const label = `${context.repoId}/${file}`;
  const incomplete = `${blob}.incomplete`;
  await mkdir(dirname(blob), { recursive: true });
  const task = context.progress?.task(`download ${label}`, meta.size);
  let reported = 0;
  const report = (have: number) => {
    if (task && have > reported) task.tick(have - reported);
    reported = Math.max(reported, have);
  };
  let lastError: unknown;
  for (let attempt = 0; attempt <= context.retries; attempt++) {
    if (attempt > 0) await new Promise((r) => setTimeout(r, Math.min(5_000, 250 * 2 ** (attempt - 1))));
    try {
      await transfer(context.client, meta, incomplete, report);
      lastError = undefined;
      break;
    } catch (error) {
      if (error instanceof HubError) throw error;
      lastError = error;
    }
  }
  if (lastError !== undefined) {
    const have = await fileSize(incomplete);
    throw new HubError(
      `hub: downloading ${label} failed after ${context.retries + 1} attempts: ${networkReason(lastError)}. ` +
        `The ${have} bytes received are kept in ${incomplete}; running again resumes from there.`,
      { cause: lastError },
    );
  }
  const size = await fileSize(incomplete);
  if (meta.size !== undefined && size !== meta.size) {
    await rm(incomplete, { force: true });
    throw new HubError(`hub: ${label}: received ${size} bytes but the hub announced ${meta.size}; the download was discarded`);
  }
  const check = await verifyBlob(incomplete, meta.etag);
  if (!check.ok) {
    await rm(incomplete, { force: true });
    throw new HubError(
      `hub: ${label}: the downloaded bytes have ${check.algorithm} ${check.actual} but the hub advertised ${meta.etag}; ` +
        'the file was discarded. Run again; if it keeps happening, the server (HF_ENDPOINT) is serving corrupt data.',
    );
  }
  await rename(incomplete, blob);
  task?.done(`${size} bytes`);
}

/** One GET of the remaining bytes, appended to `incomplete`. Network errors propagate to be retried. */
async function transfer(client: HubClient, meta: FileMeta, incomplete: string, report: (have: number) => void): Promise<void> {
  let have = await fileSize(incomplete);
  if (meta.size !== undefined && have > meta.size) {
    await rm(incomplete, { force: true });
    have = 0;
  }
  report(have);
  if (meta.size !== undefined && have === meta.size) return;
  const headers: Record<string, string> = have > 0 ? { range: `bytes=${have}-` } : {};
  const { hops } = await client.request(meta.downloadUrl, { method: 'GET', headers });
  const response = hops[hops.length - 1];
  let append = false;
  if (response.status === 206) {
    const start = /^bytes (\d+)-/.exec(response.headers.get('content-range') ?? '')?.[1];
    append = start !== undefined && Number(start) === have;
    if (!append) {
      await response.body?.cancel();
      await rm(incomplete, { force: true });
      throw new Error(`the server resumed at byte ${start ?? '?'} instead of ${have}`);
    }
  } else if (response.status === 416 && have > 0) {
    // Nothing left to send: the partial file may already be whole; size and hash checks decide.
    await response.body?.cancel();
    return;
  } else if (!response.ok) {
    await response.body?.cancel();
    if (response.status >= 500) throw new Error(`HTTP ${response.status} from ${new URL(meta.downloadUrl).host}`);
    throw new HubError(`hub: downloading ${meta.downloadUrl} failed with HTTP ${response.status}`);
  }
  if (!response.body) throw new Error('empty response body');
  if (!append) report(0);
  const handle = await open(incomplete, append ? 'a' : 'w');
  let written = append ? have : 0;
  try {
    for await (const chunk of response.body) {
      try {
        // Positions are ignored in append mode on Linux; either way each chunk lands right after the previous one.
        written = await writeFully(handle, chunk, written);
      } catch (error) {
        // A full disk is not a network error: retrying would not help.
        throw new HubError(
          `hub: cannot write ${incomplete}: ${(error as Error).message}; the bytes received so far are kept, and running again resumes from there`,
          { cause: error },
        );
      }
      report(written);
    }
    await handle.sync();
  } finally {
    await handle.close();
  }
}

/** Resolves the checkpoint from the cache alone. */
async function fromCache(repoId: string, revision: string, cache: RepoCache, reason: string): Promise<string> {
  const advice =
    'Run once with network access to download it, set HF_ENDPOINT to a reachable hub mirror, or point the config at a ' +
    'local folder holding config.json and model.safetensors.';
  const commit = await cache.commitOf(revision);
  if (commit === undefined) {
    throw new HubError(`hub: ${repoId} (revision ${revision}) is not in the cache ${cache.root}, and ${reason}. ${advice}`);
  }
  const snapshot = cache.snapshot(commit);
  const missing: string[] = [];
  if (!(await exists(join(snapshot, 'config.json')))) missing.push('config.json');
  if (!(await exists(join(snapshot, WEIGHTS)))) {
    if (await exists(join(snapshot, WEIGHTS_INDEX))) {
      for (const shard of await shardsOf(join(snapshot, WEIGHTS_INDEX), repoId)) {
        if (!(await exists(cache.snapshotFile(commit, shard)))) missing.push(shard);
      }
    } else {
      missing.push(WEIGHTS);
    }
  }
  if (missing.length > 0) {
    throw new HubError(
      `hub: the cached snapshot ${snapshot} of ${repoId} lacks ${missing.join(', ')}, and ${reason}. ${advice}`,
    );
  }
  return snapshot;
}
