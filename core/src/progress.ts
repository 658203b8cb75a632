import type { ProgressReporter, ProgressTask } from './types.js';

export interface ConsoleProgressOptions {
  stream?: NodeJS.WriteStream | NodeJS.WritableStream;
  /** Redraw one status line in place; defaults to whether the stream is a TTY. */
  interactive?: boolean;
  /** Minimum milliseconds between plain-line updates of one task when not interactive. */
  plainIntervalMs?: number;
}

/**
 * Progress on stderr. On a TTY each task redraws one line with a bar and an ETA; elsewhere (CI, pipes, files)
 * it degrades to plain lines, throttled so logs stay readable.
 */
export class ConsoleProgress implements ProgressReporter {
  private readonly stream: NodeJS.WritableStream;
  private readonly interactive: boolean;
  private readonly plainIntervalMs: number;
  private liveLine = false;

  constructor(options: ConsoleProgressOptions = {}) {
    this.stream = options.stream ?? process.stderr;
    this.interactive = options.interactive ?? Boolean((this.stream as NodeJS.WriteStream).isTTY);
    this.plainIntervalMs = options.plainIntervalMs ?? 10_000;
  }

  info(message: string): void {
    this.line(message);
  }

  warn(message: string): void {
    this.line(`warning: ${message}`);
  }

  task(label: string, total?: number): ProgressTask {
    const started = Date.now();
    let done = 0;
    let detail = '';
    let lastPlain = 0;
    const render = (final: boolean): string => {
      const elapsed = (Date.now() - started) / 1000;
      const parts = [label];
      if (total !== undefined && total > 0) {
        const fraction = Math.min(1, done / total);
        if (this.interactive && !final) parts.push(bar(fraction));
        parts.push(`${done}/${total}`);
        if (!final && done > 0 && done < total) parts.push(`ETA ${formatDuration((elapsed / done) * (total - done))}`);
      } else if (done > 0) {
        parts.push(String(done));
      }
      if (detail) parts.push(detail);
      if (final) parts.push(`(${formatDuration(elapsed)})`);
      return parts.join('  ');
    };
    this.line(render(false), true);
    return {
      tick: (n = 1, newDetail?: string) => {
        done += n;
        if (newDetail !== undefined) detail = newDetail;
        if (this.interactive) {
          this.line(render(false), true);
        } else if (Date.now() - lastPlain >= this.plainIntervalMs) {
          lastPlain = Date.now();
          this.line(render(false));
        }
      },
      done: (finalDetail?: string) => {
        if (finalDetail !== undefined) detail = finalDetail;
        this.line(render(true));
      },
    };
  }

  private line(text: string, live = false): void {
    if (this.interactive) {
      this.stream.write(`${this.liveLine ? '\r\x1b[2K' : ''}${text}${live ? '' : '\n'}`);
      this.liveLine = live;
    } else {
      this.stream.write(`${text}\n`);
    }
  }
}

/** Discards everything: for programs that report progress themselves, and for tests. */
export class SilentProgress implements ProgressReporter {
  task(): ProgressTask {
    return { tick() {}, done() {} };
  }
  info(): void {}
  warn(): void {}
}

function bar(fraction: number, width = 20): string {
  const full = Math.round(fraction * width);
  return `[${'#'.repeat(full)}${'.'.repeat(width - full)}]`;
}

export function formatDuration(seconds: number): string {
  if (!Number.isFinite(seconds)) return '?';
  if (seconds < 60) return `${seconds.toFixed(seconds < 10 ? 1 : 0)}s`;
  const m = Math.floor(seconds / 60);
  if (m < 60) return `${m}m${String(Math.round(seconds % 60)).padStart(2, '0')}s`;
  return `${Math.floor(m / 60)}h${String(m % 60).padStart(2, '0')}m`;
}
