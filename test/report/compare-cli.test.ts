/**
 * `melanoma compare a.csv b.csv`: the paired DeLong test of two models on the same images,
 * through the built CLI, and its refusals (different images or targets, an existing --json).
 */
import { spawnSync } from 'child_process';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { comparePredictionFiles, joinPredictionFiles } from '../../src/cli/compare';
import { mulberry32 } from '../../src/data/random';
import { delongTest } from '../../src/metrics/delong';

const CLI = path.resolve(__dirname, '../../dist/cli.js');
const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'compare-'));
afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

const n = 400;
const random = mulberry32(17);
const targets = Array.from({ length: n }, (_, i) => (i % 5 === 0 ? 1 : 0));
/** A good model (scores follow the target) and a weak one (mostly noise). */
const good = targets.map((t) => 1 / (1 + Math.exp(-(2.5 * t - 1.2 + 3 * random()))));
const weak = targets.map((t) => 1 / (1 + Math.exp(-(0.3 * t + 2 * random() - 1))));

function csv(name: string, scores: number[], rows = targets.map((t, i) => ({ name: `ISIC_${i}`, target: t, score: scores[i] }))): string {
  const file = path.join(dir, name);
  fs.writeFileSync(file, ['image_name,target,score', ...rows.map((r) => `${r.name},${r.target},${r.score}`)].join('\n') + '\n');
  return file;
}

const goodCsv = csv('good.csv', good);
// The same images in another order: the join is by image_name, not by row.
const weakCsv = csv('weak.csv', weak, targets.map((t, i) => ({ name: `ISIC_${i}`, target: t, score: weak[i] })).reverse());

function run(...args: string[]) {
  return spawnSync(process.execPath, [CLI, 'compare', ...args], { encoding: 'utf8' });
}

test('joins on image_name and equals delongTest on the aligned scores', () => {
  const result = comparePredictionFiles(goodCsv, weakCsv);
  const direct = delongTest(targets, good, weak);
  expect(result).toMatchObject({ images: n, nPos: 80, nNeg: 320, aucA: direct.aucA, aucB: direct.aucB, pValue: direct.pValue });
  expect(result.aucA).toBeGreaterThan(result.aucB);
  expect(result.pValue).toBeLessThan(0.001);
});

test('the CLI prints both AUCs, the difference with its CI and p; --json writes it once', () => {
  const json = path.join(dir, 'result.json');
  const out = run(goodCsv, weakCsv, '--json', json);
  expect(out.status).toBe(0);
  expect(out.stdout).toMatch(/^400 images \(80 melanoma, 320 benign\), paired DeLong test\n/);
  expect(out.stdout).toMatch(/A good\.csv: AUC 0\.\d{4}\nB weak\.csv: AUC 0\.\d{4}\nA - B = 0\.\d{4}  95% CI /);
  expect(JSON.parse(fs.readFileSync(json, 'utf8')).pValue).toBeLessThan(0.001);
  const again = run(goodCsv, weakCsv, '--json', json);
  expect(again.status).toBe(2);
  expect(again.stderr).toMatch(/result\.json already exists and was left untouched: choose another --json path/);
  expect(again.stdout).toBe(''); // refused before any work
});

test('cv or run folders stand for their predictions files; two files of one name are told apart by their paths', () => {
  const folders = ['cv-a', 'cv-b'].map((name, k) => {
    const folder = path.join(dir, name);
    fs.mkdirSync(folder);
    fs.copyFileSync(k === 0 ? goodCsv : weakCsv, path.join(folder, 'oof_predictions.csv'));
    return folder;
  });
  const out = run(...folders);
  expect(out.stderr).toBe('');
  expect(out.status).toBe(0);
  const [a, b] = folders.map((f) => path.join(f, 'oof_predictions.csv'));
  expect(out.stdout).toContain(`A ${a}: AUC ${comparePredictionFiles(goodCsv, weakCsv).aucA.toFixed(4)}\nB ${b}: AUC `);
  const missing = run(folders[0], path.join(dir, 'nope'));
  expect(missing.status).toBe(2);
  expect(missing.stderr).toContain(`${path.join(dir, 'nope')} does not exist: pass a predictions CSV, a cv folder (its oof_predictions.csv) or a run folder (its valid_predictions.csv)`);
});

test('a model against itself: difference 0, p = 1', () => {
  const out = run(goodCsv, csv('good-copy.csv', good));
  expect(out.status).toBe(0);
  expect(out.stdout).toMatch(/A - B = 0\.0000 .*\nz = 0\.000, two-sided p = 1\.0000/);
  // The same file twice is a mistake, not a comparison: refused (compare and ensemble alike).
  expect(() => comparePredictionFiles(goodCsv, path.join(dir, '.', 'good.csv'))).toThrow(`${path.join(dir, 'good.csv')} is given twice: give each model's predictions once`);
  expect(() => joinPredictionFiles([goodCsv, weakCsv, goodCsv])).toThrow(`${goodCsv} is given twice`);
});

test('files of different images or targets are refused with the first example', () => {
  const fewer = csv('fewer.csv', good, targets.slice(1).map((t, i) => ({ name: `ISIC_${i + 1}`, target: t, score: good[i + 1] })));
  const out = run(goodCsv, fewer);
  expect(out.status).toBe(2);
  expect(out.stderr).toMatch(/must score the same images: 1 are only in the first and 0 only in the second \(e\.g\. ISIC_0\)/);
  const flipped = csv('flipped.csv', good, targets.map((t, i) => ({ name: `ISIC_${i}`, target: i === 7 ? 1 - t : t, score: good[i] })));
  const mismatch = run(goodCsv, flipped);
  expect(mismatch.stderr).toMatch(/ISIC_7 has target 0 in .*good\.csv but 1 in .*flipped\.csv/);
});
