/**
 * Patient grouping for models with patient context (TrainerOptions.patientContext): such a model
 * scores each image together with the other images of its patient in the same batch, so the
 * loader keeps a patient's images next to each other, and each batch says which images share a
 * patient. A sample with an empty patient_id is a patient of its own.
 */
import type { LesionSample } from './types';
import { shuffleInPlace } from './random';

/** The positions of `order` grouped by patient, patients in order of first appearance. */
function patientRuns(samples: readonly LesionSample[], order: readonly number[]): number[][] {
  const byPatient = new Map<string, number[]>();
  const runs: number[][] = [];
  for (const index of order) {
    const id = samples[index].patientId;
    const run = id === '' ? undefined : byPatient.get(id);
    if (run) run.push(index);
    else {
      const created = [index];
      runs.push(created);
      if (id !== '') byPatient.set(id, created);
    }
  }
  return runs;
}

/**
 * `order` rearranged so that each patient's images are consecutive. With `random`, patients come
 * in a random order and each patient's images too (a training epoch); without, patients keep the
 * order of their first image and images their order (scoring).
 */
export function groupByPatient(samples: readonly LesionSample[], order: readonly number[], random?: () => number): number[][] {
  const runs = patientRuns(samples, order);
  if (!random) return runs;
  for (const run of runs) shuffleInPlace(run, random);
  return shuffleInPlace(runs, random);
}

/**
 * Where batches of at most `batchSize` end (exclusive end positions) when no patient may be split
 * across two batches unless it alone has more than `batchSize` images: each batch then holds whole
 * patients, so every image is scored with all the others of its patient that fit in one batch.
 */
export function patientBatchEnds(runs: readonly (readonly number[])[], batchSize: number): number[] {
  const ends: number[] = [];
  let position = 0;
  let inBatch = 0;
  for (const run of runs) {
    if (inBatch > 0 && inBatch + run.length > batchSize) {
      ends.push(position);
      inBatch = 0;
    }
    for (let left = run.length; left > 0; ) {
      const taken = Math.min(left, batchSize - inBatch);
      position += taken;
      inBatch += taken;
      left -= taken;
      if (inBatch === batchSize) {
        ends.push(position);
        inBatch = 0;
      }
    }
  }
  if (inBatch > 0) ends.push(position);
  return ends;
}

/** For the engine: each image's patient as a small integer, equal for images of one patient. */
export function patientGroups(samples: readonly LesionSample[]): Int32Array {
  const numbers = new Map<string, number>();
  return Int32Array.from(samples, (sample, i) => {
    if (sample.patientId === '') return -1 - i; // alone: a number no other image has
    const known = numbers.get(sample.patientId);
    if (known !== undefined) return known;
    numbers.set(sample.patientId, i);
    return i;
  });
}

/** Whether any patient (a non-empty patient_id) has more than one of the samples. */
export function hasPatientWithSeveralImages(samples: readonly LesionSample[]): boolean {
  const seen = new Set<string>();
  for (const { patientId } of samples) {
    if (patientId === '') continue;
    if (seen.has(patientId)) return true;
    seen.add(patientId);
  }
  return false;
}
