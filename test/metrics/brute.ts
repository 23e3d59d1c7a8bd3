/** Independent O(n^2) reference implementations used only by the tests. */

/** Deterministic test data generator (LCG: independent of the library's PRNG). */
export function lcg(seed: number): () => number {
  let x = seed >>> 0;
  return () => {
    x = (Math.imul(x, 1664525) + 1013904223) >>> 0;
    return x / 4294967296;
  };
}

/** Random labels/scores with many ties (scores on a coarse grid), both classes guaranteed. */
export function randomCase(seed: number, n: number, levels: number, prevalence = 0.3, shift = 0.2): { y: number[]; s: number[] } {
  const r = lcg(seed);
  const y: number[] = [];
  const s: number[] = [];
  for (let i = 0; i < n; i++) {
    const label = i === 0 ? 1 : i === 1 ? 0 : r() < prevalence ? 1 : 0;
    y.push(label);
    s.push(Math.floor((r() * (1 - shift) + label * shift) * levels) / levels);
  }
  return { y, s };
}

/** Pairwise Mann-Whitney: P(score_pos > score_neg) + 1/2 P(tie), over all pairs. */
export function bruteAuc(y: number[], s: number[]): number {
  let num = 0;
  let pairs = 0;
  for (let i = 0; i < y.length; i++) {
    if (y[i] !== 1) continue;
    for (let j = 0; j < y.length; j++) {
      if (y[j] !== 0) continue;
      pairs++;
      if (s[i] > s[j]) num += 1;
      else if (s[i] === s[j]) num += 0.5;
    }
  }
  return num / pairs;
}

/** DeLong structural components by direct definition. */
export function bruteComponents(y: number[], s: number[]): { v10: number[]; v01: number[] } {
  const pos = s.filter((_, i) => y[i] === 1);
  const neg = s.filter((_, i) => y[i] === 0);
  const psi = (a: number, b: number): number => (a > b ? 1 : a === b ? 0.5 : 0);
  return {
    v10: pos.map((p) => neg.reduce((acc, q) => acc + psi(p, q), 0) / neg.length),
    v01: neg.map((q) => pos.reduce((acc, p) => acc + psi(p, q), 0) / pos.length),
  };
}

export function sampleVariance(xs: number[]): number {
  const m = xs.reduce((a, b) => a + b, 0) / xs.length;
  return xs.reduce((a, b) => a + (b - m) ** 2, 0) / (xs.length - 1);
}

/** ROC points by direct counting at every distinct threshold, plus the origin. */
export function bruteRoc(y: number[], s: number[]): { fpr: number[]; tpr: number[]; thr: number[] } {
  const nPos = y.filter((v) => v === 1).length;
  const nNeg = y.length - nPos;
  const thr = [...new Set(s)].sort((a, b) => b - a);
  const fpr = [0];
  const tpr = [0];
  for (const t of thr) {
    tpr.push(y.filter((v, i) => v === 1 && s[i] >= t).length / nPos);
    fpr.push(y.filter((v, i) => v === 0 && s[i] >= t).length / nNeg);
  }
  return { fpr, tpr, thr: [Infinity, ...thr] };
}
