/**
 * Checkpoints through the Trainer: save, Trainer.load, and training continues exactly as if it
 * had never stopped (same losses, same predictions); the file is plain safetensors with timm
 * names; saving is atomic and never silently replaces a file.
 */
import { execFileSync, spawnSync } from 'child_process';
import { promises as fsp, readFileSync } from 'fs';
import * as path from 'path';
import type { LesionSample } from '../../src/data/types';
import { Engine, EngineError } from '../../src/native';
import { SafetensorsError, decodeSafetensors } from '../../src/train/safetensors';
import { EpochRecord, Trainer } from '../../src/train/trainer';
import { TINY_TRAINER, tempDir, tinyDemo } from './helpers';

const root = tempDir('melanoma-checkpoint-');
const checkpointDir = path.join(root, 'checkpoints');
const checkpoint = path.join(checkpointDir, 'epoch1.safetensors');

let samples: LesionSample[];
/** Per epoch, the loss of every batch of the uninterrupted run. */
const originalLosses: number[][] = [[], []];
let originalHistory: EpochRecord[];
let originalLogits: number[];

beforeAll(async () => {
  samples = (await tinyDemo(root)).samples;
  // Default head dropout and drop path stay on: the resumed run must also draw the same masks.
  const trainer = new Trainer({ ...TINY_TRAINER, epochs: 2 });
  trainer.on('batch', (b) => originalLosses[b.epoch - 1].push(b.loss));
  try {
    originalHistory = await trainer.fit(
      { train: samples },
      { afterEpoch: async (record, t) => (record.epoch === 1 ? t.save(checkpoint) : undefined) },
    );
    originalLogits = (await trainer.predict(samples)).map((p) => p.logit);
  } finally {
    await trainer.dispose();
  }
});

test('the uninterrupted run trained 2 epochs of 8 batches with finite losses', () => {
  expect(originalHistory.map((r) => [r.epoch, r.step])).toEqual([
    [1, 8],
    [2, 16],
  ]);
  expect(originalLosses.map((l) => l.length)).toEqual([8, 8]);
  expect(originalLosses.flat().every(Number.isFinite)).toBe(true);
});

test('Trainer.load continues exactly: identical next-step losses and predictions', async () => {
  const resumed = await Trainer.load(checkpoint);
  try {
    expect(resumed.completedEpochs).toBe(1);
    expect(resumed.options).toEqual(new Trainer({ ...TINY_TRAINER, epochs: 2 }).options);
    const losses: number[] = [];
    resumed.on('batch', (b) => {
      expect(b.epoch).toBe(2);
      losses.push(b.loss);
    });
    const history = await resumed.fit({ train: samples });
    // The first step after loading, then the whole epoch, bit for bit (CPU, fp32, same order, same RNG).
    expect(losses[0]).toBe(originalLosses[1][0]);
    expect(losses).toEqual(originalLosses[1]);
    expect(history).toHaveLength(2);
    expect(history[0]).toEqual(originalHistory[0]); // restored from the checkpoint
    expect(history[1].step).toBe(16);
    expect(history[1].trainLoss).toBe(originalHistory[1].trainLoss);
    expect((await resumed.predict(samples)).map((p) => p.logit)).toEqual(originalLogits);
  } finally {
    await resumed.dispose();
  }
});

test('a loaded checkpoint saves back to the same tensors (model, optimizer, RNG)', async () => {
  const resumed = await Trainer.load(checkpoint);
  const again = path.join(root, 'resaved.safetensors');
  try {
    await resumed.save(again);
  } finally {
    await resumed.dispose();
  }
  const a = decodeSafetensors(readFileSync(checkpoint));
  const b = decodeSafetensors(readFileSync(again));
  expect(b.tensors.map((t) => t.name)).toEqual(a.tensors.map((t) => t.name));
  const differing = a.tensors.filter((t, i) => !t.data.equals(b.tensors[i].data)).map((t) => t.name);
  expect(differing).toEqual([]);
  expect(b.metadata['melanoma.step']).toBe('8');
});

test('the file is safetensors with timm names, optimizer.* moments and metadata', () => {
  const bytes = readFileSync(checkpoint);
  const headerLength = Number(bytes.readBigUInt64LE(0));
  expect(headerLength % 8).toBe(0); // tensor data 8-byte aligned
  const header = JSON.parse(bytes.subarray(8, 8 + headerLength).toString('utf8'));
  expect(header.__metadata__.format).toBe('pt');

  const { tensors, metadata } = decodeSafetensors(bytes, checkpoint);
  const entries = new Map(tensors.map((t) => [t.name, t]));
  const shapeOf = (name: string) => entries.get(name) && [entries.get(name)!.dtype, entries.get(name)!.shape];
  expect(shapeOf('conv_stem.weight')).toEqual(['F32', [8, 3, 3, 3]]);
  expect(shapeOf('blocks.0.0.conv_dw.weight')).toEqual(['F32', [8, 1, 3, 3]]);
  expect(shapeOf('blocks.1.0.conv_pwl.weight')).toEqual(['F32', [8, 48, 1, 1]]); // 8 in x6 expansion -> 8 out
  expect(shapeOf('blocks.0.0.se.conv_reduce.bias')).toEqual(['F32', [2]]);
  expect(shapeOf('bn2.running_var')).toEqual(['F32', [320]]);
  expect(shapeOf('classifier.weight')).toEqual(['F32', [1, 320]]);
  expect(shapeOf('blocks.1.0.bn1.num_batches_tracked')).toEqual(['I64', []]);
  expect(entries.get('blocks.1.0.bn1.num_batches_tracked')!.data.readBigInt64LE(0)).toBe(8n);
  expect(shapeOf('optimizer.exp_avg.conv_stem.weight')).toEqual(['F32', [8, 3, 3, 3]]);
  expect(shapeOf('optimizer.exp_avg_sq.classifier.bias')).toEqual(['F32', [1]]);
  expect(entries.get('engine.rng_state')?.dtype).toBe('U8');
  // Every parameter has both moments; every key is a model key, a moment or the RNG state.
  const modelNames = tensors.filter((t) => !t.name.startsWith('optimizer.') && t.name !== 'engine.rng_state').map((t) => t.name);
  const parameters = modelNames.filter((n) => !/running_(mean|var)|num_batches_tracked/.test(n));
  expect(tensors.length).toBe(modelNames.length + 2 * parameters.length + 1);
  for (const n of parameters) expect(entries.has(`optimizer.exp_avg.${n}`) && entries.has(`optimizer.exp_avg_sq.${n}`)).toBe(true);

  expect(metadata['melanoma.format']).toBe('melanoma-native/checkpoint@1');
  expect(metadata['melanoma.step']).toBe('8');
  expect(metadata['melanoma.epochs_done']).toBe('1');
  expect(Number(metadata['melanoma.pos_weight'])).toBe(24 / 8); // 'auto': negatives / positives
  expect(JSON.parse(metadata['melanoma.options'])).toMatchObject({ model: 'efficientnet-b0', widthFactor: 0.25, stageLimit: 3, imageSize: 32 });
  expect(JSON.parse(metadata['melanoma.history'])).toHaveLength(1);
});

/**
 * An independent reader: Python's `safetensors` when installed, else the format read with the
 * standard library (length, JSON header, offsets), so the file is checked outside this package's
 * decoder either way. Skipped only without python3.
 */
const python = spawnSync('python3', ['--version']).status === 0;
(python ? test : test.skip)('python3 reads the checkpoint (safetensors package when installed)', () => {
  const script = `
import json, struct, sys, array
path = sys.argv[1]
try:
    from safetensors.numpy import load_file
    tensors = load_file(path)
    out = {"reader": "safetensors", "names": sorted(tensors), "stem": float(tensors["conv_stem.weight"].astype("float64").sum()),
           "stemShape": list(tensors["conv_stem.weight"].shape)}
except ImportError:
    with open(path, "rb") as f:
        data = f.read()
    (n,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8:8 + n])
    header.pop("__metadata__", None)
    end = 0
    for name, entry in header.items():
        begin, stop = entry["data_offsets"]
        end = max(end, stop)
    assert 8 + n + end == len(data), "data section does not end at the end of the file"
    begin, stop = header["conv_stem.weight"]["data_offsets"]
    values = array.array("f")
    values.frombytes(data[8 + n + begin:8 + n + stop])
    out = {"reader": "stdlib", "names": sorted(header), "stem": sum(values), "stemShape": header["conv_stem.weight"]["shape"]}
print(json.dumps(out))
`;
  const result = JSON.parse(execFileSync('python3', ['-c', script, checkpoint], { encoding: 'utf8' }));
  const { tensors } = decodeSafetensors(readFileSync(checkpoint));
  expect(result.names).toEqual(tensors.map((t) => t.name).sort());
  const stem = tensors.find((t) => t.name === 'conv_stem.weight')!;
  const values = new Float32Array(new Uint8Array(stem.data).buffer);
  expect(result.stemShape).toEqual([8, 3, 3, 3]);
  expect(result.stem).toBeCloseTo(values.reduce((a, b) => a + b, 0), 4);
});

describe('saving', () => {
  test('refuses to overwrite an existing file (exact message), replaces it with overwrite, leaves no temporary files', async () => {
    const before = readFileSync(checkpoint);
    const trainer = new Trainer({ ...TINY_TRAINER, epochs: 1, seed: 99 });
    try {
      await trainer.prepare(samples);
      await expect(trainer.save(checkpoint)).rejects.toThrow(
        new Error(`${checkpoint} already exists and was left untouched: choose another path or pass overwrite`),
      );
      expect(readFileSync(checkpoint).equals(before)).toBe(true);
      const other = path.join(checkpointDir, 'other.safetensors');
      const events: unknown[] = [];
      trainer.on('checkpoint', (e) => events.push(e));
      await trainer.save(other);
      await trainer.save(other, { overwrite: true });
      expect(events).toEqual([
        { path: other, epoch: 0 },
        { path: other, epoch: 0 },
      ]);
      expect(decodeSafetensors(readFileSync(other)).metadata['melanoma.step']).toBe('0');
    } finally {
      await trainer.dispose();
    }
    // Only the two checkpoints: no '.<name>.<pid>.<time>.tmp' left behind.
    expect((await fsp.readdir(checkpointDir)).sort()).toEqual(['epoch1.safetensors', 'other.safetensors']);
  });

  test('save creates missing folders', async () => {
    const trainer = new Trainer({ ...TINY_TRAINER, posWeight: 2 });
    const nested = path.join(root, 'a', 'b', 'c.safetensors');
    try {
      await trainer.save(nested);
    } finally {
      await trainer.dispose();
    }
    expect(decodeSafetensors(readFileSync(nested)).metadata['melanoma.pos_weight']).toBe('2');
  });
});

describe('loading errors', () => {
  test('a missing file, and a safetensors file that is not a checkpoint', async () => {
    const missing = path.join(root, 'nope.safetensors');
    const err = await Trainer.load(missing).then(
      () => null,
      (e: Error) => e,
    );
    expect(err).toBeInstanceOf(SafetensorsError);
    expect(err!.message).toBe(`${missing} does not exist`);
    const plain = path.join(root, 'plain.safetensors');
    const bytes = readFileSync(checkpoint);
    const { tensors } = decodeSafetensors(bytes);
    const { encodeSafetensors } = await import('../../src/train/safetensors');
    await fsp.writeFile(plain, encodeSafetensors(tensors.slice(0, 3)));
    await expect(Trainer.load(plain)).rejects.toThrow(
      `${plain} is not a melanoma-native checkpoint (no 'melanoma-native/checkpoint@1' metadata): pretrained weights are imported with \`weights import\``,
    );
  });

  test('a checkpoint whose header was edited names the field, not a JSON error or a NaN step', async () => {
    const { tensors, metadata } = decodeSafetensors(readFileSync(checkpoint));
    const { encodeSafetensors } = await import('../../src/train/safetensors');
    const edited = path.join(root, 'edited.safetensors');
    const cases: [string, string | undefined, string][] = [
      ['melanoma.options', undefined, "'melanoma.options' should be a JSON object of options but is missing"],
      ['melanoma.options', '{"model":', `'melanoma.options' should be a JSON object of options but is '{"model":'`],
      ['melanoma.epochs_done', 'two', "'melanoma.epochs_done' should be a whole number of epochs but is 'two'"],
      ['melanoma.pos_weight', undefined, "'melanoma.pos_weight' should be a positive number but is missing"],
      ['melanoma.history', '{}', "'melanoma.history' should be a JSON array of epochs but is '{}'"],
      // Not a string at all (the safetensors header is JSON, so an editor can write a number).
      ['melanoma.step', 8 as unknown as string, "'melanoma.step' should be a whole number of steps but is '8' (a number, not a string)"],
    ];
    for (const [key, value, expected] of cases) {
      const changed = { ...metadata };
      if (value === undefined) delete changed[key];
      else changed[key] = value;
      await fsp.writeFile(edited, encodeSafetensors(tensors, changed));
      const err = await Trainer.load(edited).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(SafetensorsError);
      expect((err as Error).message).toBe(`${edited} has a damaged checkpoint header: ${expected}; checkpoints are written by Trainer.save (was the file edited?)`);
    }
  });

  test('predict and evaluate check what they are given, as the constructor checks options', async () => {
    const trainer = await Trainer.load(checkpoint);
    try {
      await expect(trainer.predict(undefined as unknown as LesionSample[])).rejects.toThrow(
        new TypeError('Expected an array of samples (LesionSample[], e.g. openDataset(...).samples) but received undefined of type undefined'),
      );
      await expect(trainer.predict([], { imageSize: 1 })).rejects.toThrow(new RangeError('Expected integer between 32 and 2048 for imageSize but received 1 of type number'));
    } finally {
      await trainer.dispose();
    }
  });

  test('an override that changes the architecture is refused before any engine is built, naming the option', async () => {
    const created = jest.spyOn(Engine, 'create');
    try {
      await expect(Trainer.load(checkpoint, { headHidden: 8 })).rejects.toThrow(
        new RangeError(
          `Expected no headHidden other than the checkpoint's with Trainer.load, but received 8 of type number where ${checkpoint} was trained with 0 of type number: the architecture is the checkpoint's; to change it, train a new model`,
        ),
      );
      expect(created).not.toHaveBeenCalled();
      // The checkpoint's own value is no change: it loads.
      const same = await Trainer.load(checkpoint, { headHidden: 0 });
      await same.dispose();
    } finally {
      created.mockRestore();
    }
  });
});
