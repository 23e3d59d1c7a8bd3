/**
 * Mixed-precision correctness (issue 7): the same model, from the same initial weights, trained
 * for N steps on the same fixed batches in each precision (and with and without CUDA graphs),
 * compared with the fp32 eager loss curve. Mixed precision changes rounding, so single steps
 * drift apart; what must agree is the curve: the mean loss of every window of steps.
 *
 * Tolerance (documented in the README): every window's mean loss within
 * 0.1 x (fp32 window mean) + 0.02 of fp32's. fp16 steps skipped by dynamic loss scaling are
 * counted, and their loss still enters the curve (as torch.cuda.amp's would).
 */
import { renderLesion } from '../data/demo';
import { mixSeed, mulberry32 } from '../data/random';
import { ENGINE_PROBE, Precision, TrainerOptions, engineConfig, resolveOptions } from '../model/config';
import { Engine, torchInfo } from '../native';

export interface PrecisionCheckOptions extends Omit<TrainerOptions, 'precision' | 'cudaGraph'> {
  precisions?: Precision[];
  /** Graph modes to run each precision in; default: both on cuda when built, eager otherwise. */
  cudaGraphs?: boolean[];
  steps?: number;
  /** Distinct fixed batches, cycled (default 8). */
  batches?: number;
  /** Steps per window of the curve comparison (default 20). */
  window?: number;
}

export interface PrecisionCurve {
  benchmark: 'precision';
  precision: Precision;
  cudaGraph: boolean;
  stepMode: string;
  device: string;
  model: string;
  batchSize: number;
  imageSize: number;
  steps: number;
  /** fp16: optimizer steps skipped because the scaled gradients overflowed. */
  skippedSteps: number;
  finalLossScale: number;
  windowMeans: number[];
  /**
   * The window closest to (or furthest past) its tolerance: its index, |window mean - fp32 eager
   * window mean| (0 for the reference itself) and the deviation it is allowed.
   */
  worstWindow: { index: number; deviation: number; tolerance: number };
  withinTolerance: boolean;
}

export const RELATIVE_TOLERANCE = 0.1;
export const ABSOLUTE_TOLERANCE = 0.02;

/** Fixed lesion-like batches (the demo's renderer), the same for every precision. */
function fixedBatches(count: number, batchSize: number, imageSize: number, seed: number) {
  return Array.from({ length: count }, (_, b) => {
    const images = Buffer.alloc(batchSize * imageSize * imageSize * 3);
    const labels = new Float32Array(batchSize);
    for (let i = 0; i < batchSize; i++) {
      const melanoma = (b * batchSize + i) % 4 === 0;
      labels[i] = melanoma ? 1 : 0;
      images.set(renderLesion(imageSize, melanoma, mulberry32(mixSeed(seed, b, i))), i * imageSize * imageSize * 3);
    }
    return { images, labels, batchSize, height: imageSize, width: imageSize };
  });
}

function windowMeans(losses: number[], window: number): number[] {
  const means: number[] = [];
  for (let start = 0; start + window <= losses.length; start += window) {
    means.push(losses.slice(start, start + window).reduce((a, b) => a + b, 0) / window);
  }
  return means;
}

export async function runPrecisionCheck(options: PrecisionCheckOptions = {}): Promise<PrecisionCurve[]> {
  const { precisions, cudaGraphs, steps = 200, batches = 8, window = 20, ...trainerOptions } = options;
  if (!Number.isInteger(steps) || steps < 1) throw new RangeError(`Expected integer >= 1 for steps but received ${steps}`);
  if (!Number.isInteger(window) || window < 1 || window > steps) throw new RangeError(`Expected integer between 1 and steps (${steps}) for window but received ${window}`);
  const probe = ENGINE_PROBE;
  const base = resolveOptions({ ...trainerOptions, precision: 'fp32', cudaGraph: false }, probe);
  const onCuda = base.device === 'cuda';
  const modes = cudaGraphs ?? (onCuda && torchInfo().cudaGraphs ? [false, true] : [false]);
  const wanted = precisions ?? (onCuda ? (['fp32', 'bf16', 'fp16'] as Precision[]) : (['fp32'] as Precision[]));
  const data = fixedBatches(batches, base.batchSize, base.imageSize, base.seed);

  const curves: PrecisionCurve[] = [];
  let reference: number[] | null = null;
  // fp32 eager first: it is the reference every other curve is compared with.
  const runs = [{ precision: 'fp32' as Precision, cudaGraph: false }, ...wanted.flatMap((precision) => modes.map((cudaGraph) => ({ precision, cudaGraph })))].filter(
    (run, i, all) => all.findIndex((r) => r.precision === run.precision && r.cudaGraph === run.cudaGraph) === i,
  );
  for (const run of runs) {
    const o = resolveOptions({ ...trainerOptions, ...run }, probe);
    const engine = await Engine.create(engineConfig(o, 3));
    try {
      const losses: number[] = [];
      let skippedSteps = 0;
      let lossScale = 1;
      for (let step = 0; step < steps; step++) {
        const result = await engine.trainStep({ ...data[step % data.length], lr: o.lr });
        losses.push(result.loss);
        if (result.overflowSkipped) skippedSteps += 1;
        lossScale = result.lossScale;
      }
      const means = windowMeans(losses, window);
      reference ??= means;
      const deviations = means.map((m, i) => Math.abs(m - reference![i]));
      const tolerances = reference.map((r) => RELATIVE_TOLERANCE * r + ABSOLUTE_TOLERANCE);
      const worst = deviations.reduce((w, d, i) => (d - tolerances[i] > deviations[w] - tolerances[w] ? i : w), 0);
      curves.push({
        benchmark: 'precision',
        precision: run.precision,
        cudaGraph: run.cudaGraph,
        stepMode: engine.info().stepMode,
        device: o.device,
        model: o.model,
        batchSize: o.batchSize,
        imageSize: o.imageSize,
        steps,
        skippedSteps,
        finalLossScale: lossScale,
        windowMeans: means,
        worstWindow: { index: worst, deviation: deviations[worst], tolerance: tolerances[worst] },
        withinTolerance: deviations.every((d, i) => Number.isFinite(d) && d <= tolerances[i]),
      });
    } finally {
      await engine.dispose();
    }
  }
  return curves;
}
