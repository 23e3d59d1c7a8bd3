/** Smoke test of the data benchmark on a tiny generated set (the real run uses 1024 px JPEGs). */
import * as path from 'path';
import { runDataBenchmark } from '../../src/bench/data-bench';
import { tempDir } from './helpers';

describe('runDataBenchmark', () => {
  const dir = tempDir();

  it('generates TFRecords once, then reports images/s per size, per core and in total', async () => {
    const opts = { dir: path.join(dir, 'bench'), images: 10, sourceSize: 128, sizes: [32, 64], batchSize: 4, epochs: 1 };
    const r = await runDataBenchmark(opts);
    expect(r).toMatchObject({ sourceSize: 128, images: 10 });
    expect(r.meanJpegBytes).toBeGreaterThan(500);
    expect(r.rows.map((x) => [x.imageSize, x.mode, x.images])).toEqual([
      [32, 'per-core', 10],
      [32, 'total', 10],
      [64, 'per-core', 10],
      [64, 'total', 10],
    ]);
    for (const row of r.rows) expect(row.imagesPerSecond).toBeGreaterThan(0);
    await expect(runDataBenchmark({ ...opts, images: 0 })).rejects.toThrow('Expected positive integer for images but received 0');
  });
});
