// 16-bit float storage (core/src/numeric/half.ts) against numpy's float16 and torch's bfloat16 conversions
// (test/golden/half, from scripts/golden/half_floats.py): every bit pattern must match, ties to even included.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { decodeHalf, encodeHalf, roundToHalf, type HalfType } from '@transformaly/core';

const golden = JSON.parse(readFileSync(join(import.meta.dirname, 'golden', 'half', 'half_floats.json'), 'utf8')) as {
  float32Bits: number[];
  float16Bits: number[];
  bfloat16Bits: number[];
};
const inputs = new Float32Array(Uint32Array.from(golden.float32Bits).buffer);
const expected: Record<HalfType, Uint16Array> = {
  float16: Uint16Array.from(golden.float16Bits),
  bfloat16: Uint16Array.from(golden.bfloat16Bits),
};

describe.each(['float16', 'bfloat16'] as const)('%s', (type) => {
  it('narrows float32 exactly as the reference rounds it', () => {
    const bits = new Uint16Array(inputs.length);
    encodeHalf(type, inputs, bits);
    const wrong = [...bits.keys()].filter((i) => bits[i] !== expected[type][i]);
    expect(wrong.map((i) => `${inputs[i]}: ${bits[i].toString(16)} vs ${expected[type][i].toString(16)}`)).toEqual([]);
  });

  it('widens back exactly, and rounding in place is narrowing then widening', () => {
    const widened = new Float32Array(inputs.length);
    decodeHalf(type, expected[type], widened);
    // Widening is exact, so narrowing the widened value gives the same bits again.
    const again = new Uint16Array(inputs.length);
    encodeHalf(type, widened, again);
    expect(again).toEqual(expected[type]);
    const rounded = Float32Array.from(inputs);
    roundToHalf(type, rounded);
    expect(rounded).toEqual(widened);
    // Values both formats hold exactly stay as they are.
    const hand = Float32Array.of(1, -2, 0.5);
    roundToHalf(type, hand);
    expect([...hand]).toEqual([1, -2, 0.5]);
  });

  it('keeps NaN a NaN', () => {
    const bits = new Uint16Array(1);
    encodeHalf(type, [Number.NaN], bits);
    const out = new Float32Array(1);
    decodeHalf(type, bits, out);
    expect(Number.isNaN(out[0])).toBe(true);
  });
});

it('float16 ties: 1 + 2^-11 rounds to 1 (even), 1 + 3 * 2^-11 to 1 + 2^-9', () => {
  const values = Float32Array.of(1 + 2 ** -11, 1 + 3 * 2 ** -11, 65520, 2 ** -25, 2 ** -24);
  roundToHalf('float16', values);
  expect([...values]).toEqual([1, 1 + 2 ** -9, Infinity, 0, 2 ** -24]);
});
