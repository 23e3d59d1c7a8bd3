/**
 * Learning-rate schedules, early stopping and progressive resizing as pure functions of where
 * training is (fractional epoch) and what it has seen (the history). The engine takes the
 * learning rate with every train step, so nothing here crosses into C++, and a resumed run gets
 * the same rates because they are recomputed from its restored history.
 */

export type ScheduleName = 'constant' | 'cosine' | 'step' | 'plateau';
export const SCHEDULE_NAMES: readonly ScheduleName[] = ['constant', 'cosine', 'step', 'plateau'];

/** The schedule fields of the resolved options (see src/model/config.ts for their meaning). */
export interface ScheduleSettings {
  lr: number;
  epochs: number;
  schedule: ScheduleName;
  warmupEpochs: number;
  minLr: number;
  stepEpochs: number;
  lrDecay: number;
  plateauPatience: number;
}

/** What the plateau schedule and early stopping look at: validation AUC per finished epoch. */
export interface AucHistoryEntry {
  validAuc: number | null;
}

/**
 * Times the plateau schedule has cut the rate after `history`: each time the validation AUC has
 * not beaten its best for `patience` epochs in a row, the rate is multiplied by `decay` and the
 * count restarts. torch's ReduceLROnPlateau ('max' mode) waits one epoch longer: it cuts after
 * more than `patience` epochs without improvement.
 */
export function plateauReductions(history: readonly AucHistoryEntry[], patience: number): number {
  let best = -Infinity;
  let bad = 0;
  let reductions = 0;
  for (const { validAuc } of history) {
    if (validAuc === null) continue; // nothing to judge: neither improvement nor stagnation
    if (validAuc > best) {
      best = validAuc;
      bad = 0;
    } else if (++bad >= patience) {
      reductions++;
      bad = 0;
    }
  }
  return reductions;
}

/**
 * The learning rate of the optimizer step taken at fractional epoch `progress` (0 = the start
 * of training, 1.5 = half-way through the second epoch). Warm-up ramps linearly from
 * lr / steps-in-warm-up up to lr over `warmupEpochs`; after it, the schedule proper applies:
 * - constant: lr;
 * - cosine: from lr down to minLr at the end of the last epoch (half a cosine wave);
 * - step: lr x lrDecay^floor((progress - warm-up) / stepEpochs);
 * - plateau: lr x lrDecay^(plateau reductions so far), judged on validation AUC after each epoch.
 */
export function learningRateAt(s: ScheduleSettings, progress: number, history: readonly AucHistoryEntry[] = []): number {
  if (s.warmupEpochs > 0 && progress < s.warmupEpochs) return s.lr * Math.min(1, Math.max(progress, 0) / s.warmupEpochs);
  const t = progress - s.warmupEpochs;
  switch (s.schedule) {
    case 'constant':
      return s.lr;
    case 'cosine': {
      const span = Math.max(s.epochs - s.warmupEpochs, 1e-9);
      const f = Math.min(Math.max(t / span, 0), 1);
      return s.minLr + (s.lr - s.minLr) * 0.5 * (1 + Math.cos(Math.PI * f));
    }
    case 'step':
      return s.lr * s.lrDecay ** Math.floor(t / s.stepEpochs + 1e-9);
    case 'plateau':
      return s.lr * s.lrDecay ** plateauReductions(history, s.plateauPatience);
  }
}

/**
 * The rate for micro-batch `batch` (0-based) of epoch `epochIndex` (0-based) out of `batches`:
 * the schedule at the batch's start (so every batch of epoch e has epoch e's step rate), except
 * during warm-up, which counts to the batch's end so that its first step is not zero.
 */
export function learningRateForBatch(
  s: ScheduleSettings,
  epochIndex: number,
  batch: number,
  batches: number,
  history: readonly AucHistoryEntry[],
): number {
  const n = Math.max(batches, 1);
  const start = epochIndex + batch / n;
  if (s.warmupEpochs > 0 && start < s.warmupEpochs) return s.lr * Math.min(1, (epochIndex + (batch + 1) / n) / s.warmupEpochs);
  return learningRateAt(s, start, history);
}

/**
 * Early stopping: the reason to stop when the validation AUC has not improved for `patience`
 * epochs (0 = never stop early), else null.
 */
export function earlyStopReason(history: readonly (AucHistoryEntry & { epoch: number })[], patience: number): string | null {
  if (patience <= 0) return null;
  let best = -Infinity;
  let bestEpoch = 0;
  let since = 0;
  for (const { validAuc, epoch } of history) {
    if (validAuc !== null && validAuc > best) {
      best = validAuc;
      bestEpoch = epoch;
      since = 0;
    } else since++;
  }
  if (bestEpoch === 0 || since < patience) return null;
  return `early stopping: validation AUC has not improved for ${since} epoch(s) since ${best.toFixed(4)} at epoch ${bestEpoch} (patience ${patience})`;
}

/** A progressive-resizing stage: train `epochs` epochs at `size` px. */
export interface ImageSizeStage {
  size: number;
  epochs: number;
}

/** The epochs progressive-resizing stages take in all: the default epochs of a run with them. */
export function progressiveEpochs(stages: readonly ImageSizeStage[]): number {
  return stages.reduce((sum, stage) => sum + stage.epochs, 0);
}

/**
 * Image size of epoch `epoch` (1-based) under progressive resizing: the stages run in order and
 * the last one's size continues after they are used up. Without stages, `imageSize`.
 */
export function imageSizeForEpoch(imageSize: number, stages: readonly ImageSizeStage[] | null, epoch: number): number {
  if (!stages || stages.length === 0) return imageSize;
  let end = 0;
  for (const { epochs, size } of stages) {
    end += epochs;
    if (epoch <= end) return size;
  }
  return stages[stages.length - 1].size;
}

/** Parses the CLI form `128:2,256:3` (size:epochs, in order) into stages. */
export function parseProgressive(text: string): ImageSizeStage[] {
  const parts = text.split(',').map((p) => p.trim());
  return parts.map((part) => {
    const m = /^(\d+):(\d+)$/.exec(part);
    if (!m)
      throw new RangeError(`Expected SIZE:EPOCHS pairs separated by commas for --progressive (e.g. 128:2,256:3) but received '${text}'`);
    return { size: Number(m[1]), epochs: Number(m[2]) };
  });
}
