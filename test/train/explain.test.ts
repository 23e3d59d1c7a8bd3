/**
 * Grad-CAM and `melanoma explain`: the map is the classifier's evidence laid out in space (it sums
 * to logit - bias), computing it changes nothing in training, the PNG puts red where the map is
 * positive and blue where it is negative, and the command's refusals.
 */
import { spawnSync } from 'child_process';
import { existsSync, readFileSync, writeFileSync } from 'fs';
import * as path from 'path';
import sharp from 'sharp';
import { openDataset } from '../../src/data/isic';
import { explainImages, gradCamPng } from '../../src/explain';
import { evaluatePredictionsFile } from '../../src/cli/evaluate';
import { readSafetensorsFile } from '../../src/train/safetensors';
import type { TrainRunResult } from '../../src/train/run';
import { EpochRecord, GradCamPrediction, Trainer } from '../../src/train/trainer';
import { TINY_OPTIONS, tinyTrainedRun } from './tiny-data';

const CLI = path.resolve(__dirname, '..', '..', 'dist', 'cli.js');
const fixture = tinyTrainedRun();
const root = fixture.root;
let data: string, run: TrainRunResult;
beforeAll(() => ({ data, run } = fixture.made()));
const best = () => path.join(run.runDir, 'best.safetensors');

test('each map sums to logit - bias (pooling + Linear head), and its logits are the predictions\'', async () => {
  const trainer = await Trainer.load(best());
  try {
    const samples = (await openDataset(data)).samples;
    const maps = await trainer.gradCam(samples, { imageSize: 64 });
    const predicted = await trainer.predict(samples, { imageSize: 64 });
    const { tensors } = await readSafetensorsFile(best());
    const bias = tensors.find((t) => t.name === 'classifier.bias')!.data.readFloatLE(0);
    expect(maps).toHaveLength(24);
    expect([maps[0].mapHeight, maps[0].mapWidth]).toEqual([8, 8]); // 64 px at stride 8 (3 stages)
    maps.forEach((m, i) => {
      expect(m.logit).toBeCloseTo(predicted[i].logit, 4);
      expect(m.map.reduce((a, b) => a + b, 0)).toBeCloseTo(m.logit - bias, 4);
      expect(m.image).toHaveLength(64 * 64 * 3);
    });
  } finally {
    await trainer.dispose();
  }
});

test('computing Grad-CAM changes nothing in training: the next epoch is the same with or without it', async () => {
  const samples = (await openDataset(data)).samples;
  const comparable = (r: EpochRecord) => ({ ...r, seconds: 0, trainImagesPerSecond: 0, dataWaitSeconds: 0 });
  const histories: EpochRecord[][] = [];
  for (const explainFirst of [true, false]) {
    const trainer = await Trainer.load(path.join(run.runDir, 'last.safetensors'), { epochs: 2 });
    try {
      if (explainFirst) await trainer.gradCam(samples.slice(0, 5));
      histories.push((await trainer.fit({ train: samples.slice(0, 16), valid: samples.slice(16) })).map(comparable));
    } finally {
      await trainer.dispose();
    }
  }
  expect(histories[0]).toEqual(histories[1]);
});

test('a frozen backbone and a metadata model: the maps still come, with the logits scoring gave', async () => {
  const samples = (await openDataset(data)).samples;
  const trainer = new Trainer({ ...TINY_OPTIONS, metadata: true, freezeBackboneEpochs: 1, epochs: 1 });
  try {
    await trainer.fit({ train: samples.slice(0, 16) });
    const scored = await trainer.predict(samples); // images per patient counted over all 24
    // Three chosen images, their patients counted in the whole set as when they were scored.
    const chosen = [samples[1], samples[7], samples[20]];
    const maps = await trainer.gradCam(chosen, { population: samples });
    maps.forEach((m, i) => expect(m.logit).toBeCloseTo(scored[[1, 7, 20][i]].logit, 4));
  } finally {
    await trainer.dispose();
  }
});

test('the PNG: the image on the left, red where the map is positive and blue where negative on the right', async () => {
  const size = 32;
  const grey = Buffer.alloc(size * size * 3, 128);
  const prediction = (map: number[]): GradCamPrediction => ({
    imageName: 'X', patientId: 'P', target: 1, logit: 0, probability: 0.5,
    map: Float32Array.from(map), mapHeight: 2, mapWidth: 2, image: grey, imageSize: size,
  });
  const decode = async (png: Buffer) => sharp(png).raw().toBuffer({ resolveWithObject: true });
  const { data: pixels, info } = await decode(await gradCamPng(prediction([1, 0, 0, -1])));
  expect([info.width, info.height, info.channels]).toEqual([2 * size, size, 3]);
  const at = (x: number, y: number) => Array.from(pixels.subarray((y * 2 * size + x) * 3, (y * 2 * size + x) * 3 + 3));
  expect(at(3, 3)).toEqual([128, 128, 128]); // left: the image as it is
  const [r1, , b1] = at(size + 2, 2); // right, top-left: positive
  const [r2, , b2] = at(2 * size - 3, size - 3); // right, bottom-right: negative
  expect(r1 - b1).toBeGreaterThan(60);
  expect(b2 - r2).toBeGreaterThan(60);
  // A map of zeros leaves the image untouched.
  const flat = await decode(await gradCamPng(prediction([0, 0, 0, 0])));
  expect(flat.data.every((v) => v === 128)).toBe(true);
});

test('explainImages: one PNG per image and a gallery; from an evaluation\'s hardest cases; refusals', async () => {
  const names = (await openDataset(data)).samples.slice(0, 3).map((s) => s.imageName);
  const out = path.join(root, 'explained');
  const result = await explainImages({ checkpoint: run.runDir, data, images: names, out });
  expect(result.images.map((i) => i.imageName)).toEqual(names);
  for (const i of result.images) expect((await sharp(path.join(out, i.file)).metadata()).width).toBe(2 * 32);
  const html = readFileSync(result.index, 'utf8');
  for (const name of names) expect(html).toContain(`<b>${name}</b>`);
  // 32 px images are shown 8 times as large (256 px tall), pixel for pixel.
  expect(html.match(/<img [^>]*width="512" height="256"/g)).toHaveLength(3);
  expect(html).toContain('image-rendering:pixelated');

  await expect(explainImages({ checkpoint: run.runDir, data, images: names, out })).rejects.toThrow(`${out} already exists and was left untouched`);
  await expect(explainImages({ checkpoint: run.runDir, data, images: ['ISIC_NOPE', names[0]], out: path.join(root, 'x') })).rejects.toThrow(`1 of the 2 images are not in ${data}: ISIC_NOPE`);
  expect(existsSync(path.join(root, 'x'))).toBe(false);

  const { evaluation } = await evaluatePredictionsFile(path.join(run.runDir, 'valid_predictions.csv'), { bootstrap: 0 });
  const evaluationFile = path.join(root, 'evaluation.json');
  writeFileSync(evaluationFile, JSON.stringify(evaluation));
  const hardest = await explainImages({ checkpoint: run.runDir, data, fromEvaluation: evaluationFile, out: path.join(root, 'hardest') });
  const expected = [...evaluation.hardestCases.missedMelanomas, ...evaluation.hardestCases.falseAlarms].map((c) => c.id);
  expect(hardest.images.map((i) => i.imageName)).toEqual([...new Set(expected)]);
  writeFileSync(evaluationFile, JSON.stringify({ ...evaluation, counts: { ...evaluation.counts, folds: 5 } }));
  await expect(explainImages({ checkpoint: run.runDir, data, fromEvaluation: evaluationFile, out: path.join(root, 'w') })).rejects.toThrow(
    "pools 5 folds: explain one fold's cases with that fold's model",
  );
  writeFileSync(evaluationFile, JSON.stringify({ ...evaluation, unit: 'patient' }));
  await expect(explainImages({ checkpoint: run.runDir, data, fromEvaluation: evaluationFile, out: path.join(root, 'y') })).rejects.toThrow('evaluates patients, not images');
});

(existsSync(CLI) ? test : test.skip)('the explain command, and exactly one of --images and --hardest', () => {
  const names = readFileSync(path.join(run.runDir, 'valid_predictions.csv'), 'utf8').trim().split('\n').slice(1, 3).map((l) => l.split(',')[0]);
  const out = path.join(root, 'cli');
  const ok = spawnSync(process.execPath, [CLI, 'explain', run.runDir, '--data', data, '--images', names.join(','), '--out', out], { encoding: 'utf8' });
  expect(ok.stderr).toBe('');
  expect(ok.status).toBe(0);
  expect(ok.stdout).toContain(`wrote 2 PNGs and ${path.join(out, 'index.html')}`);
  const neither = spawnSync(process.execPath, [CLI, 'explain', run.runDir, '--data', data, '--out', path.join(root, 'z')], { encoding: 'utf8' });
  expect(neither.status).toBe(2);
  expect(neither.stderr).toContain('error: pass exactly one of --images NAME,... and --hardest evaluation.json');
});
