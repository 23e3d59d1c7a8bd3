/**
 * The GPU-vs-sharp decode check (`melanoma bench --decode-check`): its JPEG cases are what their
 * names say (read back with sharp), and an engine without a GPU decoder is reported as such with
 * the reason, not as a comparison. The comparison itself runs on the GPU machine (bench/gpu-run.sh).
 */
import sharp from 'sharp';
import { decodeCheckCases, runDecodeCheck } from '../../src/bench/decode-check';
import { torchInfo } from '../../src/native';

test('the cases cover baseline 4:2:0 and 4:4:4, progressive, greyscale, non-square and small JPEGs', async () => {
  const cases = await decodeCheckCases(256);
  const meta = new Map(await Promise.all(cases.map(async (c) => [c.name, await sharp(c.bytes).metadata()] as const)));
  expect(meta.get('baseline')).toMatchObject({ format: 'jpeg', width: 256, height: 256, isProgressive: false, chromaSubsampling: '4:2:0', channels: 3 });
  expect(meta.get('chroma-444')).toMatchObject({ isProgressive: false, chromaSubsampling: '4:4:4' });
  expect(meta.get('progressive')).toMatchObject({ isProgressive: true });
  expect(meta.get('greyscale')).toMatchObject({ channels: 1 });
  expect(meta.get('non-square-fill')).toMatchObject({ width: 256, height: 192 });
  expect(cases.find((c) => c.name === 'non-square-cover')!.fit).toBe('cover');
  expect(meta.get('small')).toMatchObject({ width: 200, height: 150 });
});

(torchInfo().nvjpeg ? test.skip : test)('without a GPU decoder it says why and compares nothing', async () => {
  const onCpu = await runDecodeCheck({ device: 'cpu' });
  expect(onCpu).toMatchObject({ benchmark: 'decode-check', available: false, rows: [] });
  expect(onCpu.reason).toMatch(/nvJPEG decodes on the GPU, so it needs --device cuda/);
  const onCuda = await runDecodeCheck({ device: 'cuda' });
  expect(onCuda.available).toBe(false);
  // Where LibTorch sees no GPU, that is said first; else the missing decoder.
  expect(onCuda.reason).toMatch(torchInfo().cudaAvailable ? /built without nvJPEG/ : /sees no CUDA device.*use --device cpu/);
});
