/**
 * Input checks shared by every metric. Each message names the argument, what was expected and
 * what arrived, so a bad predictions file is found from the message alone.
 */

/** Thrown when a metric is mathematically undefined for the given data (e.g. one class absent). */
export class UndefinedMetricError extends RangeError {
  override name = 'UndefinedMetricError';
}

function describe(value: unknown): string {
  if (typeof value === 'number') return Number.isNaN(value) ? 'NaN' : String(value);
  if (typeof value === 'string') return JSON.stringify(value);
  if (value === null) return 'null';
  if (value === undefined) return 'undefined';
  return `a value of type ${typeof value}`;
}

export { describe as describeValue };

function isArrayLike(value: unknown): value is ArrayLike<unknown> {
  return (
    value !== null &&
    typeof value === 'object' &&
    typeof (value as { length?: unknown }).length === 'number'
  );
}

function requireArrayLike(value: unknown, name: string): ArrayLike<unknown> {
  if (!isArrayLike(value)) {
    throw new TypeError(`Expected an array or typed array for ${name} but received ${describe(value)}`);
  }
  return value;
}

/** Binary labels as a Uint8Array; each must be exactly 0 or 1. */
export function toLabels(values: unknown, name = 'labels'): Uint8Array {
  if (values instanceof Uint8Array) {
    for (let i = 0; i < values.length; i++) {
      if (values[i] > 1) throw new RangeError(`${name}[${i}] must be 0 or 1 but received ${values[i]}`);
    }
    return values;
  }
  const arr = requireArrayLike(values, name);
  const out = new Uint8Array(arr.length);
  for (let i = 0; i < arr.length; i++) {
    const v = arr[i];
    if (v === 1 || v === true) out[i] = 1;
    else if (v !== 0 && v !== false) {
      throw new RangeError(`${name}[${i}] must be 0 or 1 but received ${describe(v)}`);
    }
  }
  return out;
}

/** Finite scores as a Float64Array (NaN or +-Infinity would make ranks meaningless). */
export function toScores(values: unknown, name = 'scores'): Float64Array {
  const arr = requireArrayLike(values, name);
  const out = values instanceof Float64Array ? values : new Float64Array(arr.length);
  for (let i = 0; i < arr.length; i++) {
    const v = arr[i];
    if (typeof v !== 'number' || !Number.isFinite(v)) {
      throw new RangeError(`${name}[${i}] must be a finite number but received ${describe(v)}`);
    }
    out[i] = v;
  }
  return out;
}

/** Probabilities in [0, 1]. */
export function toProbabilities(values: unknown, name = 'probabilities'): Float64Array {
  const out = toScores(values, name);
  for (let i = 0; i < out.length; i++) {
    if (out[i] < 0 || out[i] > 1) {
      throw new RangeError(`${name}[${i}] must be a probability in [0, 1] but received ${out[i]}`);
    }
  }
  return out;
}

export function requireSameLength(a: ArrayLike<unknown>, aName: string, b: ArrayLike<unknown>, bName: string): void {
  if (a.length !== b.length) {
    throw new RangeError(
      `${aName} and ${bName} must have the same length but received ${a.length} ${aName} and ${b.length} ${bName}`,
    );
  }
}

/** Validated (labels, scores) pair. */
export function toLabelledScores(labels: unknown, scores: unknown, scoresName = 'scores'): { y: Uint8Array; s: Float64Array } {
  const l = requireArrayLike(labels, 'labels');
  const s = requireArrayLike(scores, scoresName);
  requireSameLength(l, 'labels', s, scoresName);
  return { y: toLabels(l), s: toScores(s, scoresName) };
}

/** Throws UndefinedMetricError unless both classes are present. */
export function requireBothClasses(nPos: number, nNeg: number, metric: string): void {
  if (nPos === 0 || nNeg === 0) {
    throw new UndefinedMetricError(
      `${metric} is undefined when one class is absent: expected at least one positive (label 1) and one negative (label 0) but received ${nPos} positive${nPos === 1 ? '' : 's'} and ${nNeg} negative${nNeg === 1 ? '' : 's'}`,
    );
  }
}

export function requireProbabilityLevel(level: number, name = 'level'): void {
  if (typeof level !== 'number' || !(level > 0 && level < 1)) {
    throw new RangeError(`Expected ${name} in (0, 1) but received ${describe(level)}`);
  }
}

export function requirePositiveInteger(value: unknown, name: string): number {
  if (typeof value !== 'number' || !Number.isInteger(value) || value < 1) {
    throw new RangeError(`Expected positive integer for ${name} but received ${describe(value)}`);
  }
  return value;
}
