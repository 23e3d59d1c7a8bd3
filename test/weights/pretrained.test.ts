/**
 * Fine-tuning from imported weights: `pretrained` resolves a name or path, the architecture
 * (model, width, padding, BatchNorm eps/momentum) follows the sidecar, the backbone is loaded and
 * the head starts fresh; a checkpoint of the fine-tuned model keeps the architecture.
 */
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'fs';
import * as os from 'os';
import * as path from 'path';
import { importWeights, ImportWeightsResult, resolvePretrained, WeightsError } from '../../src/model/weights';
import type { NamedTensor } from '../../src/native';
import { decodeSafetensors } from '../../src/train/safetensors';
import { Trainer } from '../../src/train/trainer';
import { tinyDemo } from '../train/helpers';
import { FIXTURES } from './helpers';

const LM = path.join(FIXTURES, 'lukemelas-b0-w025-f16.pth');
const FAST = { device: 'cpu', imageSize: 32, batchSize: 4, workers: 1, epochs: 1, seed: 5 } as const;

let dir: string;
let lukemelas: ImportWeightsResult;
beforeAll(async () => {
  dir = mkdtempSync(path.join(os.tmpdir(), 'melanoma-pretrained-'));
  lukemelas = await importWeights(LM, { weightsDir: path.join(dir, 'weights'), name: 'lm' });
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const byName = (tensors: NamedTensor[]) => new Map(tensors.map((t) => [t.name, t]));

test('the architecture follows the weights', () => {
  const trainer = new Trainer({ ...FAST, pretrained: lukemelas.file });
  expect(trainer.options).toMatchObject({
    model: 'efficientnet-b0',
    widthFactor: 0.25,
    stageLimit: 7,
    padding: 'same',
    bnEps: 1e-3,
    bnMomentum: 0.01,
    pretrained: path.resolve(lukemelas.file),
  });
  // Options equal to the weights' own are accepted.
  expect(new Trainer({ ...FAST, pretrained: lukemelas.file, model: 'efficientnet-b0', padding: 'same' }).options.padding).toBe('same');
});

test('architecture options that contradict the weights are refused', () => {
  expect(() => new Trainer({ ...FAST, pretrained: lukemelas.file, model: 'efficientnet-b3' })).toThrow(
    new RangeError(
      `Expected model "efficientnet-b0" (or no model) with pretrained weights 'lm' but received "efficientnet-b3": ` +
        `the architecture follows the weights (${lukemelas.file}); leave model out, or import weights of the architecture you want`,
    ),
  );
  expect(() => new Trainer({ ...FAST, pretrained: lukemelas.file, padding: 'symmetric' })).toThrow(/^Expected padding "same" \(or no padding\) with pretrained weights 'lm'/);
  expect(() => new Trainer({ ...FAST, pretrained: '' })).toThrow(new TypeError("Expected a non-empty string for pretrained but received '' of type string"));
});

test('names resolve in the weights folder; unknown names, .pth files and checkpoints are explained', async () => {
  const weightsDir = path.join(dir, 'weights');
  expect(resolvePretrained('lm', weightsDir).info.layout).toBe('lukemelas');
  expect(() => resolvePretrained('efficientnet-b0-timm', weightsDir)).toThrow(
    new WeightsError(
      `pretrained weights 'efficientnet-b0-timm' not found (no ${path.join(weightsDir, 'efficientnet-b0-timm.safetensors')}). ` +
        `Imported in ${weightsDir}/: lm. Import a .pth/.safetensors file first: \`melanoma weights import FILE --name NAME\` (see weights/README.md)`,
      'ERR_WEIGHTS_NOT_FOUND',
    ),
  );
  expect(() => resolvePretrained(LM)).toThrow(`${LM} is a PyTorch file: import it first with \`melanoma weights import ${LM}\`, then pass the name it prints`);

  // The sidecar is optional: the safetensors metadata holds the same description.
  const copy = path.join(dir, 'moved', 'weights.safetensors');
  mkdirSync(path.dirname(copy), { recursive: true });
  writeFileSync(copy, readFileSync(lukemelas.file));
  expect(resolvePretrained(copy).info).toEqual(lukemelas.info);

  const checkpoint = path.join(dir, 'ckpt.safetensors');
  const trainer = new Trainer({ ...FAST, model: 'efficientnet-b0', widthFactor: 0.25, stageLimit: 2 });
  await trainer.save(checkpoint);
  await trainer.dispose();
  expect(() => resolvePretrained(checkpoint)).toThrow(
    `${checkpoint} is a training checkpoint, not imported weights: continue its run with \`melanoma train --resume RUN_FOLDER\` (Trainer.load in the API), or score images with \`melanoma predict\`; --pretrained takes weights made by \`melanoma weights import\``,
  );
});

test('the backbone is loaded, the head starts fresh, and a fine-tuned checkpoint keeps the architecture', async () => {
  const imported = byName(decodeSafetensors(readFileSync(lukemelas.file)).tensors);
  const { samples } = await tinyDemo(dir);
  const trainer = new Trainer({ ...FAST, pretrained: lukemelas.file, posWeight: 1 });
  const logs: string[] = [];
  trainer.on('log', (line) => logs.push(line));
  try {
    await trainer.prepare();
    expect(logs).toContain(`pretrained: 358 backbone tensors from ${path.resolve(lukemelas.file)}; the classification head starts fresh`);
    const before = path.join(dir, 'before.safetensors');
    await trainer.save(before);
    const state = byName(decodeSafetensors(readFileSync(before)).tensors);
    for (const [name, tensor] of imported) {
      if (name.startsWith('classifier.')) expect(state.get(name)!.data.equals(tensor.data)).toBe(false);
      else expect([name, state.get(name)!.data.equals(tensor.data)]).toEqual([name, true]);
    }

    const history = await trainer.fit({ train: samples.slice(0, 16), valid: samples.slice(16, 24) });
    expect(history).toHaveLength(1);
    expect(Number.isFinite(history[0].trainLoss)).toBe(true);
    const after = path.join(dir, 'after.safetensors');
    await trainer.save(after);
    const tuned = byName(decodeSafetensors(readFileSync(after)).tensors);
    expect(tuned.get('blocks.1.0.conv_pw.weight')!.data.equals(imported.get('blocks.1.0.conv_pw.weight')!.data)).toBe(false);

    const resumed = await Trainer.load(after);
    try {
      expect(resumed.options).toMatchObject({ padding: 'same', bnEps: 1e-3, bnMomentum: 0.01, widthFactor: 0.25, pretrained: null });
    } finally {
      await resumed.dispose();
    }
  } finally {
    await trainer.dispose();
  }
});
