/**
 * Cross-validation folds that never split a patient.
 *
 * - `stratifiedGroupKFold`: any dataset; groups = patient_id, positives spread evenly, image
 *   counts balanced, seeded.
 * - `fileFolds` / `assignFileFolds`: TFRecord sets whose files are already patient-grouped and
 *   stratified (the community's triple-stratified files): a fold is a union of whole files.
 * - `writeFoldsCsv` / `readFoldsCsv`: the assignment as `image_name,patient_id,target,fold`.
 */
import { createReadStream } from 'fs';
import { parse } from 'csv-parse';
import { DataError } from './data/errors';
import { patientKey } from './data/patients';
import { mixSeed, mulberry32, shuffleInPlace } from './data/random';
import { LesionSample } from './data/types';
import { csvField, writeFileAtomic } from './files';

export interface FoldAssignment {
  imageName: string;
  patientId: string;
  target: 0 | 1 | null;
  fold: number;
}

export type FoldSample = Pick<LesionSample, 'imageName' | 'patientId' | 'target'>;

function checkK(k: number, available: number, what: string): void {
  if (!Number.isInteger(k) || k < 2) throw new RangeError(`Expected integer >= 2 for k but received ${k}`);
  if (available < 2) throw new RangeError(`Cannot make folds from ${available} ${available === 1 ? what.replace(/s$/, '') : what}: cross-validation needs at least 2`);
  if (k > available) throw new RangeError(`Cannot make ${k} folds from ${available} ${what}: use k <= ${available}`);
}

/** Index of the smallest key; ties broken by the seeded generator (so ties do not favour fold 0). */
function argminRandomTie(keys: number[][], random: () => number): number {
  let best: number[] = [];
  let bestKey: number[] | null = null;
  keys.forEach((key, i) => {
    const cmp = bestKey === null ? -1 : compareKeys(key, bestKey);
    if (cmp < 0) {
      best = [i];
      bestKey = key;
    } else if (cmp === 0) best.push(i);
  });
  return best[Math.floor(random() * best.length)];
}

function compareKeys(a: number[], b: number[]): number {
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return a[i] - b[i];
  return 0;
}

/**
 * Patient-level stratified group k-fold. Patients with positives are placed first, most
 * positives first, each in the fold with the fewest positives (then fewest images), and a repair
 * pass swaps patients while that narrows the positive spread; patients without positives follow,
 * largest first, each in the fold with the fewest images. Every fold's positive count ends
 * within 1 of positives/k whenever swaps can reach it (always with at most one positive per
 * patient), and image counts are within about one patient's images of each other. A null target
 * counts as negative. Output is in input order.
 */
export function stratifiedGroupKFold(samples: readonly FoldSample[], k: number, seed: number): FoldAssignment[] {
  if (!Number.isInteger(seed)) throw new RangeError(`Expected integer for seed but received ${seed}`);
  const groups = new Map<string, { indices: number[]; positives: number }>();
  samples.forEach((s, i) => {
    const key = patientKey(s, i); // an image without a patient id is a group of its own
    let g = groups.get(key);
    if (!g) groups.set(key, (g = { indices: [], positives: 0 }));
    g.indices.push(i);
    if (s.target === 1) g.positives++;
  });
  checkK(k, groups.size, 'patients');
  const random = mulberry32(mixSeed(seed, 0xf01d));
  // Shuffle first so the stable sort leaves equal patients in a seeded order.
  const ordered = shuffleInPlace([...groups.values()], random).sort(
    (a, b) => b.positives - a.positives || b.indices.length - a.indices.length,
  );
  const positives = new Array<number>(k).fill(0);
  const images = new Array<number>(k).fill(0);
  const groupFold = new Map<(typeof ordered)[number], number>();
  const place = (g: (typeof ordered)[number], fold: number, sign: 1 | -1) => {
    positives[fold] += sign * g.positives;
    images[fold] += sign * g.indices.length;
    if (sign > 0) groupFold.set(g, fold);
  };
  const withPositives = ordered.filter((g) => g.positives > 0);
  for (const g of withPositives) place(g, argminRandomTie(positives.map((p, f) => [p, images[f]]), random), 1);
  repairPositiveSpread(withPositives, groupFold, positives, place);
  for (const g of ordered) if (g.positives === 0) place(g, argminRandomTie(images.map((n) => [n]), random), 1);
  const foldOf = new Array<number>(samples.length);
  for (const [g, fold] of groupFold) for (const i of g.indices) foldOf[i] = fold;
  return samples.map((s, i) => ({ imageName: s.imageName, patientId: s.patientId, target: s.target, fold: foldOf[i] }));
}

/**
 * Greedy placement can end with a positive spread above 1 when patients hold several positives
 * (3,3,2,2,2 over 2 folds gives 7/5). Swap or move patients between the fullest and emptiest
 * folds while that narrows their gap, until every fold is within 1 or no exchange helps.
 */
function repairPositiveSpread<G extends { positives: number; indices: number[] }>(
  groups: G[],
  groupFold: Map<G, number>,
  positives: number[],
  place: (g: G, fold: number, sign: 1 | -1) => void,
): void {
  for (let step = 0; step < 10 * groups.length; step++) {
    const hi = positives.indexOf(Math.max(...positives));
    const lo = positives.indexOf(Math.min(...positives));
    const gap = positives[hi] - positives[lo];
    if (gap <= 1) return;
    const inHi = groups.filter((g) => groupFold.get(g) === hi);
    const inLo: (G | null)[] = [null, ...groups.filter((g) => groupFold.get(g) === lo)]; // null: a plain move
    let best: [G, G | null] | null = null;
    let bestGap = gap;
    for (const a of inHi)
      for (const b of inLo) {
        const delta = a.positives - (b?.positives ?? 0);
        const newGap = Math.abs(gap - 2 * delta);
        if (delta > 0 && newGap < bestGap) {
          best = [a, b];
          bestGap = newGap;
        }
      }
    if (!best) return;
    const [a, b] = best;
    place(a, hi, -1);
    place(a, lo, 1);
    if (b) {
      place(b, lo, -1);
      place(b, hi, 1);
    }
  }
}

/**
 * Folds as unions of whole TFRecord files. Files are sorted by name; with a seed they are
 * shuffled first (the community's seeded KFold over file indices), without one file i goes to
 * fold i mod k (5 files, 5 folds: fold k = file k).
 */
export function fileFolds(files: readonly string[], k: number, seed?: number): Map<string, number> {
  const unique = [...new Set(files)].sort();
  checkK(k, unique.length, 'files');
  if (seed !== undefined) shuffleInPlace(unique, mulberry32(mixSeed(seed, 0xf11e)));
  return new Map(unique.map((f, i) => [f, i % k]));
}

/** File-based folds for TFRecord samples. */
export function assignFileFolds(samples: readonly LesionSample[], k: number, seed?: number): FoldAssignment[] {
  const fileOf = (s: LesionSample) => {
    if (s.image.kind !== 'tfrecord')
      throw new TypeError(`File-based folds need TFRecord samples but ${s.imageName} comes from a ${s.image.kind} source; use stratifiedGroupKFold`);
    return s.image.file;
  };
  const folds = fileFolds(samples.map(fileOf), k, seed);
  return samples.map((s) => ({ imageName: s.imageName, patientId: s.patientId, target: s.target, fold: folds.get(fileOf(s))! }));
}

/** The samples of one fold as validation and the rest as training, matched on image_name. */
export function splitByFold(
  samples: readonly LesionSample[],
  assignments: readonly FoldAssignment[],
  fold: number,
): { train: LesionSample[]; valid: LesionSample[] } {
  const foldOf = new Map(assignments.map((a) => [a.imageName, a.fold]));
  // A fold the assignment lacks (k, or a 1-based count) would train on everything and validate on nothing.
  const folds = [...new Set(foldOf.values())].sort((a, b) => a - b);
  if (folds.length === 0) throw new RangeError('Expected an assignment of folds but received an empty one: make it with stratifiedGroupKFold (or assignFileFolds) from these samples');
  if (!folds.includes(fold))
    throw new RangeError(`Expected one of the assignment's folds (${folds.join(', ')}; numbered from 0) for fold but received ${typeof fold === 'number' ? fold : `'${String(fold)}' of type ${typeof fold}`}`);
  const train: LesionSample[] = [];
  const valid: LesionSample[] = [];
  for (const s of samples) {
    const f = foldOf.get(s.imageName);
    if (f === undefined)
      throw new DataError('ERR_CSV', `${s.imageName} has no fold in the assignment: regenerate the folds for this dataset`, { imageName: s.imageName });
    (f === fold ? valid : train).push(s);
  }
  return { train, valid };
}


/** Writes `image_name,patient_id,target,fold` (atomically: temporary file, then rename). */
export async function writeFoldsCsv(file: string, assignments: readonly FoldAssignment[]): Promise<void> {
  const lines = ['image_name,patient_id,target,fold'];
  for (const a of assignments) lines.push([a.imageName, a.patientId, a.target === null ? '' : String(a.target), String(a.fold)].map(csvField).join(','));
  await writeFileAtomic(file, Buffer.from(lines.join('\n') + '\n'), { overwrite: true });
}

/** Reads a fold CSV and checks it: columns, values, no duplicate image, no patient in two folds. */
export async function readFoldsCsv(file: string): Promise<FoldAssignment[]> {
  const out: FoldAssignment[] = [];
  const seen = new Set<string>();
  const patientFold = new Map<string, number>();
  const fail = (line: number, what: string) =>
    new DataError('ERR_CSV', `${file} line ${line}: ${what}. A fold CSV has image_name,patient_id,target,fold; regenerate it`, { file });
  const parser = createReadStream(file).pipe(parse({ columns: true, bom: true, trim: true, skip_empty_lines: true, info: true }));
  try {
    for await (const { record: r, info } of parser as AsyncIterable<{ record: Record<string, string>; info: { lines: number } }>) {
      for (const c of ['image_name', 'patient_id', 'target', 'fold']) if (!(c in r)) throw fail(info.lines, `missing column ${c}`);
      const fold = Number(r.fold);
      if (r.fold === '' || !Number.isInteger(fold) || fold < 0) throw fail(info.lines, `fold must be an integer >= 0 but is '${r.fold}'`);
      if (!['', '0', '1'].includes(r.target)) throw fail(info.lines, `target must be 0, 1 or empty but is '${r.target}'`);
      if (seen.has(r.image_name)) throw fail(info.lines, `${r.image_name} appears twice`);
      const pf = patientFold.get(r.patient_id);
      if (pf !== undefined && pf !== fold) throw fail(info.lines, `patient ${r.patient_id} is in folds ${pf} and ${fold}`);
      seen.add(r.image_name);
      patientFold.set(r.patient_id, fold);
      out.push({ imageName: r.image_name, patientId: r.patient_id, target: r.target === '' ? null : (Number(r.target) as 0 | 1), fold });
    }
  } catch (err) {
    if (err instanceof DataError) throw err;
    throw new DataError('ERR_CSV', `${file}: cannot parse the fold CSV (${(err as Error).message})`, { file, cause: err });
  }
  return out;
}
