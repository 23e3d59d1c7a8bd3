/**
 * The end-to-end benchmark runs the real pipeline (generated JPEG TFRecords, io addon, sharp,
 * loader, engine) on a tiny CPU configuration and accounts for its wall time.
 */
import { mkdtempSync, readdirSync, rmSync } from 'fs';
import * as os from 'os';
import * as path from 'path';
import { runEndToEndBenchmark } from '../../src/bench/end-to-end-bench';

const dir = mkdtempSync(path.join(os.tmpdir(), 'melanoma-e2e-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const tiny = { dir, records: 24, distinctImages: 3, sourceSize: 128, steps: 3, warmup: 1, device: 'cpu' as const, widthFactor: 0.25, stageLimit: 3, imageSize: 32, batchSize: 4, workers: 2 };

describe('runEndToEndBenchmark', () => {
  test('trains from generated TFRecords and splits the wall time into data wait, train steps and the rest', async () => {
    const result = await runEndToEndBenchmark(tiny);
    expect(result).toMatchObject({ benchmark: 'end-to-end', batchSize: 4, imageSize: 32, sourceSize: 128, device: 'cpu', cudaGraph: false, steps: 3, decodeConcurrency: 2 });
    expect(readdirSync(readdirSync(dir).map((d) => path.join(dir, d))[0]).filter((f) => f.endsWith('.tfrec')).length).toBeGreaterThan(0);
    expect(result.imagesPerSecond).toBeCloseTo((3 * 4) / result.seconds, 6);
    const { waitForData, trainStep, other } = result.time;
    for (const part of [waitForData, trainStep]) expect(part).toBeGreaterThanOrEqual(0);
    expect(trainStep).toBeGreaterThan(0);
    expect(waitForData + trainStep + other).toBeCloseTo(result.seconds, 6);
    expect(other).toBeGreaterThan(-1e-3);
    expect(result.modelSideImagesPerSecond).toBeGreaterThan(0);
    expect(result.ratioToModelSide).toBeCloseTo(result.imagesPerSecond / result.modelSideImagesPerSecond!, 9);
    expect(result.meanJpegBytes).toBeGreaterThan(0);
    expect(result.decodeSecondsSum).toBeGreaterThan(0);
  });

  test('records for exactly warmup + steps batches: every step asked for is timed', async () => {
    const result = await runEndToEndBenchmark({ ...tiny, records: 16, steps: 3, warmup: 1 });
    expect(result.steps).toBe(3);
    expect(result.imagesPerSecond).toBeCloseTo((3 * 4) / result.seconds, 6);
  });

  test('a run longer than one pass over the records is refused before anything is generated', async () => {
    await expect(runEndToEndBenchmark({ ...tiny, records: 8, dir: path.join(dir, 'never') })).rejects.toThrow(/records \(--records\) >= \(warmup \+ steps\) x batchSize = 16 but received 8/);
    expect(readdirSync(dir)).not.toContain('never');
  });
});
