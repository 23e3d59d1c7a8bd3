/** Shared helpers of the weights tests: manifests of reference logits and a real engine that scores images. */
import { readFileSync } from 'fs';
import * as path from 'path';
import { engineConfig, resolveOptions } from '../../src/model/config';
import type { WeightsInfo } from '../../src/model/weights';
import { Engine } from '../../src/native';
import { readSafetensorsFile } from '../../src/train/safetensors';

export const FIXTURES = path.join(__dirname, '..', 'fixtures', 'weights');

export interface ParityCase {
  name: string;
  file: string;
  layout: string;
  model: string;
  widthFactor: number;
  padding: 'same' | 'symmetric';
  logits: number[];
}

export interface Manifest {
  torch: string;
  size: number;
  batch: number;
  cases: ParityCase[];
}

export function readManifest(dir: string): { manifest: Manifest; images: Buffer } {
  const manifest = JSON.parse(readFileSync(path.join(dir, 'manifest.json'), 'utf8')) as Manifest;
  const images = readFileSync(path.join(dir, 'input.bin'));
  if (images.length !== manifest.batch * manifest.size * manifest.size * 3) throw new Error(`${dir}/input.bin does not hold ${manifest.batch} images of ${manifest.size} px`);
  return { manifest, images };
}

/**
 * Builds the engine the sidecar describes, loads every tensor of the imported file strictly
 * (head included), and returns its logits for the images (eval mode).
 */
export async function engineLogits(
  file: string,
  info: Pick<WeightsInfo, 'model' | 'widthFactor' | 'padding' | 'bnEps' | 'bnMomentum'>,
  images: Buffer,
  batch: number,
  size: number,
): Promise<Float32Array> {
  const options = resolveOptions(
    { model: info.model, widthFactor: info.widthFactor, padding: info.padding, bnEps: info.bnEps, bnMomentum: info.bnMomentum, device: 'cpu', precision: 'fp32', seed: 3 },
    { cudaAvailable: () => false },
  );
  const engine = await Engine.create(engineConfig(options, 1));
  try {
    const { tensors } = await readSafetensorsFile(file);
    await engine.importState({ model: tensors }, true);
    return (await engine.evaluate({ images, batchSize: batch, height: size, width: size })).logits;
  } finally {
    await engine.dispose();
  }
}

export function maxAbsDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  if (a.length !== b.length) throw new Error(`${a.length} vs ${b.length} values`);
  let max = 0;
  for (let i = 0; i < a.length; i++) max = Math.max(max, Math.abs(a[i] - b[i]));
  return max;
}

export function spread(values: ArrayLike<number>): number {
  return Math.max(...Array.from(values)) - Math.min(...Array.from(values));
}
