/**
 * A checkpoint written on a GPU (device cuda, precision bf16 in its options) loads on a CPU
 * machine when the device is overridden: precision and memory layout follow the new device.
 */
import { promises as fsp } from 'fs';
import * as path from 'path';
import { decodeSafetensors, encodeSafetensors } from '../../src/train/safetensors';
import { Trainer } from '../../src/train/trainer';
import { TINY_TRAINER, tempDir, tinyDemo } from './helpers';

const root = tempDir();

test('a GPU checkpoint is scored on CPU with --device cpu', async () => {
  const { samples } = await tinyDemo(root);
  const trainer = new Trainer({ ...TINY_TRAINER, epochs: 1 });
  const cpuFile = path.join(root, 'cpu.safetensors');
  try {
    await trainer.fit({ train: samples.slice(0, 24) });
    await trainer.save(cpuFile);
  } finally {
    await trainer.dispose();
  }
  // The same checkpoint as a CUDA bf16 run would have written it.
  const { tensors, metadata } = decodeSafetensors(await fsp.readFile(cpuFile));
  const options = JSON.parse(metadata['melanoma.options']);
  const gpuFile = path.join(root, 'gpu.safetensors');
  await fsp.writeFile(gpuFile, encodeSafetensors(tensors, { ...metadata, 'melanoma.options': JSON.stringify({ ...options, device: 'cuda', precision: 'bf16', channelsLast: true, decode: 'nvjpeg' }) }));

  const loaded = await Trainer.load(gpuFile, { device: 'cpu' });
  try {
    // GPU decoding is the GPU machine's: here sharp decodes.
    expect([loaded.options.device, loaded.options.precision, loaded.options.channelsLast, loaded.options.decode]).toEqual(['cpu', 'fp32', false, 'sharp']);
    const predictions = await loaded.predict(samples.slice(24));
    expect(predictions).toHaveLength(8);
    for (const p of predictions) expect(Number.isFinite(p.logit)).toBe(true);
  } finally {
    await loaded.dispose();
  }
  // Asked for explicitly where there is no GPU decoder: refused, naming the fix.
  await expect(Trainer.load(gpuFile, { device: 'cpu', decode: 'nvjpeg' })).rejects.toThrow(/decode 'sharp' with device cpu/);
});
