/**
 * Learning-rate schedules, early stopping and progressive resizing: the pure functions, their
 * option validation, and what the Trainer does with them on the real engine.
 */
import { writeFileSync } from 'fs';
import * as path from 'path';
import { encodeSafetensors, readSafetensorsFile } from '../../src/train/safetensors';
import sharp from 'sharp';
import { openDataset } from '../../src/data/isic';
import type { LesionSample } from '../../src/data/types';
import { resolveOptions } from '../../src/model/config';
import {
  ScheduleSettings,
  earlyStopReason,
  imageSizeForEpoch,
  learningRateAt,
  learningRateForBatch,
  parseProgressive,
  plateauReductions,
} from '../../src/train/schedule';
import { Trainer } from '../../src/train/trainer';
import { TINY_OPTIONS, tempDir, tinyDataset } from './tiny-data';

const base: ScheduleSettings = { lr: 1e-3, epochs: 10, schedule: 'constant', warmupEpochs: 0, minLr: 0, stepEpochs: 1, lrDecay: 0.1, plateauPatience: 1 };
const auc = (...values: (number | null)[]) => values.map((validAuc, i) => ({ validAuc, epoch: i + 1 }));

describe('learningRateAt', () => {
  test('warm-up ramps linearly to lr, then the schedule applies', () => {
    const s = { ...base, schedule: 'cosine' as const, warmupEpochs: 2 };
    expect(learningRateAt(s, 0.5)).toBeCloseTo(0.25e-3, 12);
    expect(learningRateAt(s, 1)).toBeCloseTo(0.5e-3, 12);
    expect(learningRateAt(s, 2)).toBeCloseTo(1e-3, 12); // cosine starts at lr after warm-up
    expect(learningRateAt(s, 6)).toBeCloseTo(0.5e-3, 12); // half-way through the remaining 8 epochs
    expect(learningRateAt(s, 10)).toBeCloseTo(0, 12);
  });

  test('cosine ends at minLr', () => {
    expect(learningRateAt({ ...base, schedule: 'cosine', minLr: 1e-5 }, 10)).toBeCloseTo(1e-5, 12);
    expect(learningRateAt({ ...base, schedule: 'cosine', minLr: 1e-5 }, 5)).toBeCloseTo(1e-5 + (1e-3 - 1e-5) / 2, 12);
  });

  test('step cuts by lrDecay every stepEpochs', () => {
    const s = { ...base, schedule: 'step' as const, stepEpochs: 2, lrDecay: 0.5 };
    expect([0.5, 1.99, 2, 3.5, 4].map((p) => learningRateAt(s, p))).toEqual([1e-3, 1e-3, 0.5e-3, 0.5e-3, 0.25e-3]);
  });

  test('plateau cuts after plateauPatience epochs without a better AUC', () => {
    expect(plateauReductions(auc(0.6, 0.7, 0.65, 0.66, 0.8, 0.7), 2)).toBe(1);
    expect(plateauReductions(auc(0.6, 0.6, 0.6, 0.6), 1)).toBe(3);
    expect(plateauReductions(auc(null, null), 1)).toBe(0);
    const s = { ...base, schedule: 'plateau' as const, lrDecay: 0.5, plateauPatience: 1 };
    expect(learningRateAt(s, 3.5, auc(0.7, 0.6, 0.5))).toBeCloseTo(0.25e-3, 12);
  });

  test('a batch gets the rate of its end, so the first warm-up step is not zero', () => {
    const s = { ...base, warmupEpochs: 1 };
    expect(learningRateForBatch(s, 0, 0, 4, [])).toBeCloseTo(0.25e-3, 12);
    expect(learningRateForBatch(s, 0, 3, 4, [])).toBeCloseTo(1e-3, 12);
  });
});

test('early stopping names the best epoch once patience runs out', () => {
  expect(earlyStopReason(auc(0.6, 0.7, 0.65), 2)).toBeNull();
  expect(earlyStopReason(auc(0.6, 0.7, 0.65, 0.69), 2)).toBe(
    'early stopping: validation AUC has not improved for 2 epoch(s) since 0.7000 at epoch 2 (patience 2)',
  );
  expect(earlyStopReason(auc(0.6, 0.5, 0.5, 0.5), 0)).toBeNull(); // 0 = off
});

test('progressive resizing stages', () => {
  const stages = [
    { size: 128, epochs: 2 },
    { size: 256, epochs: 3 },
  ];
  expect([1, 2, 3, 5, 6, 9].map((e) => imageSizeForEpoch(64, stages, e))).toEqual([128, 128, 256, 256, 256, 256]);
  expect(imageSizeForEpoch(64, null, 3)).toBe(64);
  expect(parseProgressive('128:2,256:3')).toEqual(stages);
  expect(() => parseProgressive('128x2')).toThrow(
    "Expected SIZE:EPOCHS pairs separated by commas for --progressive (e.g. 128:2,256:3) but received '128x2'",
  );
});

describe('schedule options are validated like every option', () => {
  const cpu = { cudaAvailable: () => false };
  test.each<[object, string]>([
    [{ schedule: 'cosin' }, "Expected one of constant, cosine, step, plateau for schedule but received 'cosin' of type string"],
    [{ warmupEpochs: 5, epochs: 3 }, 'Expected number in [0, 3] for warmupEpochs but received 5 of type number'],
    [{ lrDecay: 0 }, 'Expected number in (0, 1] for lrDecay but received 0 of type number'],
    [{ minLr: 0.1, lr: 0.01 }, 'Expected minLr <= lr (0.01) but received 0.1 of type number: the cosine schedule decays from lr down to minLr'],
    [{ earlyStopping: -1 }, 'Expected integer between 0 and 100000 for earlyStopping but received -1 of type number'],
    [{ imageSizes: [{ size: 16, epochs: 2 }] }, 'Expected integer between 32 and 2048 for imageSizes[0].size but received 16 of type number'],
    [{ imageSizes: [128, 256] }, 'Expected an array of stages such as [{ size: 128, epochs: 2 }, { size: 256, epochs: 3 }] for imageSizes but imageSizes[0] is 128'],
    [{ imageSizes: [] }, 'Expected an array of stages such as [{ size: 128, epochs: 2 }, { size: 256, epochs: 3 }] for imageSizes but received [] (an array)'],
    // Stages that would be dropped silently, and a size beside them that would go unused.
    [
      { imageSizes: [{ size: 64, epochs: 2 }, { size: 96, epochs: 3 }], epochs: 2 },
      'Expected integer >= 5 for epochs (the progressive stages (imageSizes) 64:2,96:3 take 5 epochs) but received 2: give more epochs, or leave out the stages that are not to be trained',
    ],
    [
      { imageSizes: [{ size: 64, epochs: 1 }], imageSize: 128 },
      "Expected imageSize (--image-size) or imageSizes (--progressive), not both, but received imageSize 128 of type number beside 1 stage(s): with stages, each stage trains at its own size and scoring uses the last one's",
    ],
  ])('%j', (options, message) => {
    expect(() => resolveOptions(options, cpu)).toThrow(message);
  });

  test('defaults', () => {
    const o = resolveOptions({}, cpu);
    expect([o.schedule, o.warmupEpochs, o.earlyStopping, o.imageSizes]).toEqual(['constant', 0, 0, null]);
    // With stages and no epochs, the stages' epochs; more epochs continue at the last size.
    const stages = [{ size: 64, epochs: 2 }, { size: 96, epochs: 3 }];
    expect(resolveOptions({ imageSizes: stages }, cpu).epochs).toBe(5);
    expect(resolveOptions({ imageSizes: stages, epochs: 7 }, cpu).epochs).toBe(7);
  });
});

describe('the Trainer applies them (real engine, tiny model)', () => {
  const dir = tempDir();
  let train: LesionSample[];
  beforeAll(async () => {
    train = (await openDataset(await tinyDataset(dir, 24))).samples;
  });

  test('progressive resizing trains each epoch at its stage size; the lr row follows the schedule', async () => {
    const { imageSize: _stagesGiveTheSize, ...options } = TINY_OPTIONS;
    const trainer = new Trainer({ ...options, imageSizes: [{ size: 32, epochs: 1 }, { size: 48, epochs: 2 }], schedule: 'step', lrDecay: 0.5 });
    try {
      const history = await trainer.fit({ train });
      expect(history.map((r) => r.imageSize)).toEqual([32, 48, 48]);
      expect(history.map((r) => r.lr)).toEqual([1e-3, 0.5e-3, 0.25e-3]);
      expect(history.every((r) => Number.isFinite(r.trainLoss))).toBe(true);
      // Prediction uses the last epoch's size by default.
      expect(trainer.imageSizeAt(trainer.completedEpochs)).toBe(48);
      expect(await trainer.predict(train.slice(0, 3))).toHaveLength(3);
      // Its checkpoint loads (the stages come back, no imageSize is given beside them) and goes on.
      const file = path.join(dir, 'progressive.safetensors');
      await trainer.save(file);
      const loaded = await Trainer.load(file, { epochs: 4 });
      try {
        expect(loaded.options.imageSizes).toEqual([{ size: 32, epochs: 1 }, { size: 48, epochs: 2 }]);
        expect((await loaded.fit({ train })).map((r) => r.imageSize)).toEqual([32, 48, 48, 48]);
      } finally {
        await loaded.dispose();
      }
      // A checkpoint from before the stages had to fit the epochs (3 epochs of stages taking 6,
      // an imageSize beside them) loads with the meaning it had, and scores.
      const { tensors, metadata } = await readSafetensorsFile(file);
      const options = { ...JSON.parse(metadata['melanoma.options']), epochs: 3, imageSize: 64, imageSizes: [{ size: 32, epochs: 1 }, { size: 48, epochs: 5 }] };
      const old = path.join(dir, 'progressive-old.safetensors');
      writeFileSync(old, encodeSafetensors(tensors, { ...metadata, 'melanoma.options': JSON.stringify(options) }));
      const restored = await Trainer.load(old);
      try {
        expect([restored.options.epochs, restored.options.imageSize, restored.options.imageSizes]).toEqual([3, 64, options.imageSizes]);
        expect(await restored.predict(train.slice(0, 2))).toHaveLength(2);
      } finally {
        await restored.dispose();
      }
    } finally {
      await trainer.dispose();
    }
  });

  test('early stopping ends fit when validation AUC stops improving', async () => {
    // Two validation images with the same pixels, one of each class: the AUC is 0.5 every epoch.
    const jpeg = await sharp({ create: { width: 32, height: 32, channels: 3, background: { r: 180, g: 120, b: 90 } } }).jpeg().toBuffer();
    const same = (target: 0 | 1, name: string): LesionSample => ({ ...train[0], imageName: name, patientId: name, target, image: { kind: 'memory', bytes: jpeg } });
    const trainer = new Trainer({ ...TINY_OPTIONS, epochs: 6, earlyStopping: 2 });
    try {
      const history = await trainer.fit({ train, valid: [same(0, 'a'), same(1, 'b')] });
      expect(history.map((r) => r.validAuc)).toEqual([0.5, 0.5, 0.5]);
      expect(trainer.stopReason).toBe('early stopping: validation AUC has not improved for 2 epoch(s) since 0.5000 at epoch 1 (patience 2)');
    } finally {
      await trainer.dispose();
    }
  });
});
