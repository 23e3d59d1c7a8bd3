/**
 * Bootstrap confidence intervals for AUC and partial AUC, resampling patients (not images) when
 * patient ids are given: images of one patient are correlated, so resampling them independently
 * would understate the uncertainty.
 *
 * Speed: the scores are ranked once; each replicate only re-weights the tie groups by how often
 * each sample was drawn (O(n) per replicate, no re-sorting). Integer weights make the replicate
 * AUC identical to that of the explicitly resampled data.
 */
import { mulberry32 } from '../data/random';
import { aucFromGroups, rankGroups, RankedGroups, sampleGroups } from './ranking';
import { partialAucFromGroups } from './partial-auc';
import { percentileSorted, sampleSd } from './stats';
import { refuseUnknownOptions } from '../options';
import { describeValue, requireBothClasses, requirePositiveInteger, requireProbabilityLevel, requireSameLength, toLabelledScores } from './validate';

/** The project's seeded generator (mulberry32, src/data/random.ts), with the seed validated. */
export function createRng(seed: number): () => number {
  if (typeof seed !== 'number' || !Number.isInteger(seed) || seed < 0 || seed > 0xffffffff) {
    throw new RangeError(`Expected an integer seed in [0, 4294967295] but received ${describeValue(seed)}`);
  }
  return mulberry32(seed);
}

export interface BootstrapInterval {
  estimate: number;
  /** Percentile interval. */
  ci: [number, number];
  /** Standard deviation of the replicate values. */
  se: number | null;
}

export interface BootstrapResult {
  /** 'patient' when resampling groups of images, 'image' otherwise. */
  unit: 'patient' | 'image';
  units: number;
  replicates: number;
  /** Replicates where both classes were drawn (the others have no AUC and are skipped). */
  validReplicates: number;
  seed: number;
  level: number;
  auc: BootstrapInterval;
  partialAuc: BootstrapInterval & { minTpr: number };
}

export interface BootstrapOptions {
  /** Patient id of each sample; omit to resample images. */
  groups?: ArrayLike<string | number>;
  replicates?: number;
  seed?: number;
  level?: number;
  /** TPR floor of the partial AUC (default 0.8). */
  minTpr?: number;
}

/** Patient-level (or image-level) percentile bootstrap CIs of AUC and partial AUC. */
export function bootstrapAuc(labels: ArrayLike<number>, scores: ArrayLike<number>, options: BootstrapOptions = {}): BootstrapResult {
  refuseUnknownOptions(options, ['groups', 'replicates', 'seed', 'level', 'minTpr'], { of: 'bootstrapAuc' });
  const replicates = requirePositiveInteger(options.replicates ?? 1000, 'replicates');
  const seed = options.seed ?? 0;
  const level = options.level ?? 0.95;
  const minTpr = options.minTpr ?? 0.8;
  requireProbabilityLevel(level);
  const rng = createRng(seed);
  const { y, s } = toLabelledScores(labels, scores);
  const base = rankGroups(y, s);
  requireBothClasses(base.nPos, base.nNeg, 'Bootstrap AUC');
  const groupOf = sampleGroups(base, s);

  // Units as CSR: the samples of unit u are members[start[u] .. start[u + 1]).
  let unitOf: Int32Array;
  let nUnits: number;
  if (options.groups !== undefined) {
    requireSameLength(labels, 'labels', options.groups, 'groups');
    const ids = new Map<string | number, number>();
    unitOf = new Int32Array(y.length);
    for (let i = 0; i < y.length; i++) {
      const id = options.groups[i];
      let u = ids.get(id);
      if (u === undefined) {
        u = ids.size;
        ids.set(id, u);
      }
      unitOf[i] = u;
    }
    nUnits = ids.size;
  } else {
    unitOf = Int32Array.from({ length: y.length }, (_, i) => i);
    nUnits = y.length;
  }
  const start = new Int32Array(nUnits + 1);
  for (let i = 0; i < y.length; i++) start[unitOf[i] + 1]++;
  for (let u = 0; u < nUnits; u++) start[u + 1] += start[u];
  const members = new Int32Array(y.length);
  const fill = start.slice(0, nUnits);
  for (let i = 0; i < y.length; i++) members[fill[unitOf[i]]++] = i;

  const G = base.values.length;
  const w: RankedGroups = { values: base.values, pos: new Float64Array(G), neg: new Float64Array(G), nPos: 0, nNeg: 0 };
  const aucs: number[] = [];
  const paucs: number[] = [];
  for (let r = 0; r < replicates; r++) {
    w.pos.fill(0);
    w.neg.fill(0);
    let nPos = 0;
    for (let d = 0; d < nUnits; d++) {
      const u = Math.floor(rng() * nUnits);
      for (let k = start[u]; k < start[u + 1]; k++) {
        const i = members[k];
        if (y[i] === 1) {
          w.pos[groupOf[i]]++;
          nPos++;
        } else w.neg[groupOf[i]]++;
      }
    }
    let total = 0;
    for (let g = 0; g < G; g++) total += w.pos[g] + w.neg[g];
    w.nPos = nPos;
    w.nNeg = total - nPos;
    if (w.nPos === 0 || w.nNeg === 0) continue;
    aucs.push(aucFromGroups(w));
    paucs.push(partialAucFromGroups(w, minTpr));
  }
  const interval = (values: number[], estimate: number): BootstrapInterval => {
    const sorted = Float64Array.from(values).sort();
    const alpha = (1 - level) / 2;
    return { estimate, ci: [percentileSorted(sorted, alpha), percentileSorted(sorted, 1 - alpha)], se: sampleSd(sorted) };
  };
  if (aucs.length === 0) {
    throw new RangeError(`Bootstrap failed: expected replicates with both classes but all ${replicates} replicates drew a single class`);
  }
  return {
    unit: options.groups !== undefined ? 'patient' : 'image',
    units: nUnits,
    replicates,
    validReplicates: aucs.length,
    seed,
    level,
    auc: interval(aucs, aucFromGroups(base)),
    partialAuc: { ...interval(paucs, partialAucFromGroups(base, minTpr)), minTpr },
  };
}
