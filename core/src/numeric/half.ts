// 16-bit floats as raw bits in Uint16Arrays (Node 20 has no Float16Array): IEEE half precision (float16) and
// bfloat16, both rounded to nearest, ties to even, as numpy's astype(float16) and torch's to(bfloat16) do.

export type HalfType = 'float16' | 'bfloat16';

const f32 = new Float32Array(1);
const u32 = new Uint32Array(f32.buffer);

/** float32 bits of every float16 bit pattern, so that widening is one table lookup per value. */
let halfTable: Float32Array | undefined;

function float16Table(): Float32Array {
  if (halfTable) return halfTable;
  halfTable = new Float32Array(65536);
  for (let h = 0; h < 65536; h++) {
    const sign = h & 0x8000 ? -1 : 1;
    const exp = (h >> 10) & 0x1f;
    const frac = h & 0x3ff;
    if (exp === 0) halfTable[h] = sign * frac * 2 ** -24;
    else if (exp === 31) halfTable[h] = frac ? NaN : sign * Infinity;
    else halfTable[h] = sign * (1 + frac / 1024) * 2 ** (exp - 15);
  }
  return halfTable;
}

/** float32 bits -> float16 bits, rounded to nearest even; overflow gives infinity, NaN stays NaN. */
function toFloat16Bits(x: number): number {
  const sign = (x >>> 16) & 0x8000;
  const exp = (x >>> 23) & 0xff;
  let mant = x & 0x7fffff;
  if (exp === 0xff) return sign | 0x7c00 | (mant ? 0x200 : 0);
  const e = exp - 127 + 15;
  if (e >= 31) return sign | 0x7c00;
  if (e <= 0) {
    // Subnormal half (or zero): shift the mantissa, with its implicit bit, into place and round.
    if (e < -10) return sign;
    mant |= 0x800000;
    const shift = 14 - e;
    const half = 1 << (shift - 1);
    const rest = mant & ((1 << shift) - 1);
    let bits = mant >>> shift;
    if (rest > half || (rest === half && bits & 1)) bits++;
    return sign | bits;
  }
  let bits = (e << 10) | (mant >>> 13);
  const rest = mant & 0x1fff;
  // A carry out of the mantissa correctly bumps the exponent (up to infinity).
  if (rest > 0x1000 || (rest === 0x1000 && bits & 1)) bits++;
  return sign | bits;
}

/** float32 bits -> bfloat16 bits (the upper half), rounded to nearest even; NaN stays NaN. */
function toBfloat16Bits(x: number): number {
  if ((x & 0x7f800000) === 0x7f800000 && x & 0x7fffff) return ((x >>> 16) & 0xffff) | 0x40;
  return ((x + 0x7fff + ((x >>> 16) & 1)) >>> 16) & 0xffff;
}

/** Narrows `src` into `out` (same length) as 16-bit floats of `type`. */
export function encodeHalf(type: HalfType, src: ArrayLike<number>, out: Uint16Array): void {
  const n = src.length;
  if (type === 'float16') {
    for (let i = 0; i < n; i++) {
      f32[0] = src[i];
      out[i] = toFloat16Bits(u32[0]);
    }
  } else {
    for (let i = 0; i < n; i++) {
      f32[0] = src[i];
      out[i] = toBfloat16Bits(u32[0]);
    }
  }
}

/** Widens 16-bit floats of `type` into `out` (same length), exactly. */
export function decodeHalf(type: HalfType, src: Uint16Array, out: Float32Array): void {
  const n = src.length;
  if (type === 'float16') {
    const table = float16Table();
    for (let i = 0; i < n; i++) out[i] = table[src[i]];
  } else {
    const bits = new Uint32Array(out.buffer, out.byteOffset, n);
    for (let i = 0; i < n; i++) bits[i] = src[i] << 16;
  }
}

/** Rounds float32 values in place to the nearest value of `type` (what storing and reading them back gives). */
export function roundToHalf(type: HalfType, data: Float32Array): void {
  const scratch = new Uint16Array(Math.min(data.length, 1 << 16));
  for (let start = 0; start < data.length; start += scratch.length) {
    const part = data.subarray(start, Math.min(data.length, start + scratch.length));
    const bits = scratch.subarray(0, part.length);
    encodeHalf(type, part, bits);
    decodeHalf(type, bits, part);
  }
}
