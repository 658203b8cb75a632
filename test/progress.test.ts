import { PassThrough } from 'node:stream';
import { describe, expect, it } from 'vitest';
import { ConsoleProgress, formatDuration } from '@transformaly/core';

function capture(interactive: boolean) {
  const stream = new PassThrough();
  let text = '';
  stream.on('data', (chunk) => (text += chunk.toString()));
  return { progress: new ConsoleProgress({ stream, interactive, plainIntervalMs: 0 }), text: () => text };
}

describe('progress on stderr', () => {
  it('degrades to plain lines without a TTY: no carriage returns or escape codes', () => {
    const { progress, text } = capture(false);
    const task = progress.task('features', 4);
    task.tick(2, 'batch 1');
    task.tick(2, 'batch 2');
    task.done();
    progress.warn('skipped a.png');
    const out = text();
    expect(out).not.toMatch(/[\r\x1b]/);
    const lines = out.trimEnd().split('\n');
    expect(lines[0]).toBe('features  0/4');
    expect(lines[1]).toMatch(/^features  2\/4  ETA \S+  batch 1$/);
    expect(lines[3]).toMatch(/^features  4\/4  batch 2  \(\S+\)$/);
    expect(lines[4]).toBe('warning: skipped a.png');
  });

  it('redraws one line with a bar on a TTY', () => {
    const { progress, text } = capture(true);
    const task = progress.task('training', 10);
    task.tick(5);
    progress.info('between');
    task.done();
    const out = text();
    expect(out).toContain('\r\x1b[2K');
    expect(out).toMatch(/\[#{10}\.{10}\]  5\/10/);
    expect(out).toMatch(/between\n/);
  });

  it('formats durations for ETAs', () => {
    expect(formatDuration(4.25)).toBe('4.3s');
    expect(formatDuration(75)).toBe('1m15s');
    expect(formatDuration(3 * 3600 + 120)).toBe('3h02m');
    expect(formatDuration(Infinity)).toBe('?');
  });
});
