/**
 * Sorted distinct scores with the count (or bootstrap weight) of positives and negatives at each.
 * Every rank-based metric (AUC, ROC, pAUC, DeLong, operating points) is a walk over these groups,
 * so ties are handled in one place: samples sharing a score always move together.
 */

export interface RankedGroups {
  /** Distinct scores, ascending. */
  values: Float64Array;
  /** Positives (label 1) at each distinct score; float so bootstrap weights fit too. */
  pos: Float64Array;
  /** Negatives (label 0) at each distinct score. */
  neg: Float64Array;
  nPos: number;
  nNeg: number;
}

/**
 * O(n log n): positives and negatives are sorted separately with the native numeric TypedArray
 * sort (no comparator callback, which is what keeps 10^6 scores far under a second), then merged.
 */
export function rankGroups(y: Uint8Array, s: Float64Array): RankedGroups {
  const n = y.length;
  let nPos = 0;
  for (let i = 0; i < n; i++) nPos += y[i];
  const nNeg = n - nPos;
  const ps = new Float64Array(nPos);
  const ns = new Float64Array(nNeg);
  for (let i = 0, a = 0, b = 0; i < n; i++) {
    if (y[i] === 1) ps[a++] = s[i];
    else ns[b++] = s[i];
  }
  ps.sort();
  ns.sort();
  const values = new Float64Array(n);
  const pos = new Float64Array(n);
  const neg = new Float64Array(n);
  let g = 0;
  let i = 0;
  let j = 0;
  while (i < nPos || j < nNeg) {
    const v = i < nPos && (j >= nNeg || ps[i] <= ns[j]) ? ps[i] : ns[j];
    let cp = 0;
    let cn = 0;
    // `===` treats -0 and +0 as one score, as numpy's comparisons do.
    while (i < nPos && ps[i] === v) { i++; cp++; }
    while (j < nNeg && ns[j] === v) { j++; cn++; }
    values[g] = v;
    pos[g] = cp;
    neg[g] = cn;
    g++;
  }
  return { values: values.slice(0, g), pos: pos.slice(0, g), neg: neg.slice(0, g), nPos, nNeg };
}

/** Index of the group holding score v (v must be one of the ranked scores). */
export function groupIndexOf(values: Float64Array, v: number): number {
  let lo = 0;
  let hi = values.length - 1;
  while (lo < hi) {
    const mid = (lo + hi) >>> 1;
    if (values[mid] < v) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}

/** Group index of every sample (for weighted re-walks such as the bootstrap). */
export function sampleGroups(groups: RankedGroups, s: Float64Array): Int32Array {
  const out = new Int32Array(s.length);
  for (let i = 0; i < s.length; i++) out[i] = groupIndexOf(groups.values, s[i]);
  return out;
}

/** Mann-Whitney AUC of (possibly weighted) groups: ties between classes count 1/2. */
export function aucFromGroups(g: RankedGroups): number {
  let negBelow = 0;
  let twiceU = 0;
  for (let k = 0; k < g.values.length; k++) {
    // Integer arithmetic (doubled to keep the 1/2) is exact below 2^53, so the only rounding is
    // the final division.
    twiceU += g.pos[k] * (2 * negBelow + g.neg[k]);
    negBelow += g.neg[k];
  }
  return twiceU / (2 * g.nPos * g.nNeg);
}
