/**
 * The precision check's mechanics on CPU (where only fp32 runs): the reference curve, windows,
 * tolerance, and that the fixed batches are learnable. The bf16/fp16 and CUDA-graph curves need
 * the GPU machine (bench/gpu-run.sh).
 */
import { ABSOLUTE_TOLERANCE, RELATIVE_TOLERANCE, runPrecisionCheck } from '../../src/bench/precision-check';

const tiny = { device: 'cpu' as const, widthFactor: 0.25, stageLimit: 3, imageSize: 32, batchSize: 8, steps: 30, window: 10, batches: 4 };

describe('runPrecisionCheck', () => {
  test('fp32 eager is the reference: three 10-step windows, zero deviation, and the loss falls on the fixed batches', async () => {
    const curves = await runPrecisionCheck(tiny);
    expect(curves).toHaveLength(1);
    const [reference] = curves;
    expect(reference).toMatchObject({ benchmark: 'precision', precision: 'fp32', cudaGraph: false, stepMode: 'host', steps: 30, skippedSteps: 0, withinTolerance: true });
    expect(reference.windowMeans).toHaveLength(3);
    expect(reference.windowMeans[2]).toBeLessThan(reference.windowMeans[0]);
    // With no deviation anywhere, the tightest window is the worst: the lowest mean loss.
    const lowest = reference.windowMeans.indexOf(Math.min(...reference.windowMeans));
    expect(reference.worstWindow).toEqual({ index: lowest, deviation: 0, tolerance: RELATIVE_TOLERANCE * reference.windowMeans[lowest] + ABSOLUTE_TOLERANCE });
  });

  test('mixed precision on CPU and a window longer than the run are refused with the reason', async () => {
    await expect(runPrecisionCheck({ ...tiny, precisions: ['bf16'] })).rejects.toThrow(/mixed precision \(bf16\/fp16\) needs --device cuda/);
    await expect(runPrecisionCheck({ ...tiny, window: 31 })).rejects.toThrow(/between 1 and steps \(30\) for window but received 31/);
  });
});
