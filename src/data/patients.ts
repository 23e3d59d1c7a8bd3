/**
 * Patient grouping for models with patient context (TrainerOptions.patientContext): such a model
 * scores each image together with the other images of its patient that its head sees at once (a
 * training batch; when scoring, the whole patient: src/train/patient-head.ts), so the loader keeps
 * a patient's images next to each other, and each batch says which images share a patient. A
 * sample with an empty patient_id is a patient of its own.
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
 * `order` rearranged so that each patient's images are consecutive. Without `shuffle`, patients
 * keep the order of their first image and images their order (scoring). With it (a training
 * epoch), each patient's images are shuffled and cut into runs of at most `shuffle.runLength`,
 * and the runs of all patients come in a random order.
 */
export function groupByPatient(
  samples: readonly LesionSample[],
  order: readonly number[],
  shuffle?: { random: () => number; runLength: number },
): number[][] {
  const runs = patientRuns(samples, order);
  if (!shuffle) return runs;
  const cut: number[][] = [];
  for (const run of runs) {
    shuffleInPlace(run, shuffle.random);
    for (let i = 0; i < run.length; i += shuffle.runLength) cut.push(run.slice(i, i + shuffle.runLength));
  }
  return shuffleInPlace(cut, shuffle.random);
}

/**
 * How many images of one patient a training batch takes together by default: a quarter of the
 * batch (at least 2). ISIC 2020 has about 16 images per patient; whole patients would fill a
 * batch of 8 with one patient's skin, and BatchNorm would learn its statistics from one or two
 * patients per batch while evaluation uses the running ones. A quarter keeps 4 or more patients
 * in every batch and still gives each image others of its patient to attend over.
 */
export function defaultPatientRunLength(batchSize: number): number {
  return Math.max(2, Math.ceil(batchSize / 4));
}

/**
 * What groups an image with the other images of its patient: its patient_id, or, when it has none
 * ('', a bare image folder or an empty CSV cell), a key of its own, so that unknown images are not
 * one giant patient. The folds and inspect's patient counts group by it.
 */
export function patientKey(sample: Pick<LesionSample, 'patientId'>, index: number): string {
  return sample.patientId === '' ? `\u0000image ${index}` : sample.patientId;
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

/**
 * `chosen`, then the samples of `population` that share a patient with one of them (by
 * patient_id; not the chosen ones again, by image name): what a patient-context model must see
 * to score the chosen images as it scored them within the whole population.
 */
export function withTheirPatients(chosen: readonly LesionSample[], population: readonly LesionSample[]): LesionSample[] {
  const patients = new Set(chosen.map((s) => s.patientId).filter((id) => id !== ''));
  const names = new Set(chosen.map((s) => s.imageName));
  return [...chosen, ...population.filter((s) => patients.has(s.patientId) && !names.has(s.imageName))];
}
