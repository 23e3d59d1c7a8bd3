/**
 * `melanoma ensemble`: out-of-fold predictions of an ensemble from each model's out-of-fold
 * predictions (mean probability or mean rank), its AUC against the best single model, and the
 * refusals (different images, logits in a mean, an existing --out).
 */
import { spawnSync } from 'child_process';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { ensemblePredictionFiles } from '../../src/cli/ensemble';
import { mulberry32 } from '../../src/data/random';
import { delongTest, rocAuc } from '../../src/metrics';
import { normalisedRanks } from '../../src/predict';
import { parsePredictionsCsv } from '../../src/report/predictions-csv';

const CLI = path.resolve(__dirname, '../../dist/cli.js');
const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'ensemble-'));
afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

const n = 600;
const random = mulberry32(5);
const targets = Array.from({ length: n }, (_, i) => (i % 6 === 0 ? 1 : 0));
/** Two models that see the same signal with independent noise: averaging them helps. */
const model = () => targets.map((t) => 1 / (1 + Math.exp(-(1.2 * t - 1 + 2.5 * (random() - 0.5) * 2))));
const a = model();
const b = model();

function write(name: string, scores: number[], order = targets.map((_, i) => i)): string {
  const file = path.join(dir, name);
  const lines = ['image_name,patient_id,target,score,fold', ...order.map((i) => `ISIC_${i},IP_${i >> 1},${targets[i]},${scores[i]},${i % 5}`)];
  fs.writeFileSync(file, lines.join('\n') + '\n');
  return file;
}
const fileA = write('a.csv', a);
// The same images in another order: the join is by image_name.
const fileB = write('b.csv', b, targets.map((_, i) => n - 1 - i));

test('mean: each image the mean of its probabilities; beats both models; tested against the better one', () => {
  const result = ensemblePredictionFiles([fileA, fileB]);
  const rows = parsePredictionsCsv(result.csv);
  expect(rows.map((r) => r.imageName)).toEqual(targets.map((_, i) => `ISIC_${i}`));
  rows.forEach((r, i) => expect(r.score).toBeCloseTo((a[i] + b[i]) / 2, 12));
  expect(rows[3]).toMatchObject({ patientId: 'IP_1', fold: '3', target: targets[3] });
  expect(result.aucs).toEqual([rocAuc(targets, a), rocAuc(targets, b)]);
  expect(result.auc).toBeGreaterThan(Math.max(...result.aucs));
  const best = result.aucs[0] > result.aucs[1] ? a : b;
  const test = delongTest(targets, rows.map((r) => r.score), best);
  expect(result.againstBest).toMatchObject({ file: result.aucs[0] > result.aucs[1] ? fileA : fileB, difference: test.difference, pValue: test.pValue });
});

test('rank: the mean of normalised ranks; logits are refused in a mean', () => {
  const logits = write('logits.csv', b.map((p) => Math.log(p / (1 - p))));
  const result = ensemblePredictionFiles([fileA, logits], 'rank');
  const ra = normalisedRanks(a), rb = normalisedRanks(b);
  const ranked = parsePredictionsCsv(result.csv);
  ranked.forEach((r, i) => expect(r.score).toBeCloseTo((ra[i] + rb[i]) / 2, 12));
  expect(ranked.every((r) => r.scoreScale === 'rank')).toBe(true); // so calibrate refuses them
  expect(() => ensemblePredictionFiles([fileA, logits])).toThrow(`${logits} has scores outside [0, 1]: a mean ensemble averages probabilities; use --mode rank for logits or mixed scales`);
  expect(() => ensemblePredictionFiles([fileA])).toThrow('An ensemble needs at least 2 prediction files but received 1');
  const fewer = path.join(dir, 'fewer.csv');
  fs.writeFileSync(fewer, fs.readFileSync(fileB, 'utf8').split('\n').slice(0, -2).join('\n') + '\n');
  expect(() => ensemblePredictionFiles([fileA, fewer])).toThrow(/must score the same images: 1 are only in the first and 0 only in the second/);
});

(fs.existsSync(CLI) ? test : test.skip)('the command prints every AUC and the test, writes --out once', () => {
  const out = path.join(dir, 'ensemble.csv');
  const run = () => spawnSync(process.execPath, [CLI, 'ensemble', fileA, fileB, '--out', out], { encoding: 'utf8' });
  const first = run();
  expect(first.stderr).toBe('');
  expect(first.status).toBe(0);
  expect(first.stdout).toMatch(new RegExp(`^600 images, mean of 2 models\\n  ${fileA}: AUC 0\\.\\d{4}\\n  ${fileB}: AUC 0\\.\\d{4}\\nensemble: AUC 0\\.\\d{4}; against the best single model: \\+0\\.\\d{4} \\(95% CI `));
  expect(parsePredictionsCsv(fs.readFileSync(out, 'utf8'))).toHaveLength(600);
  const before = fs.readFileSync(out);
  const again = run();
  expect(again.status).toBe(2);
  expect(again.stderr).toContain(`error: ${out} already exists and was left untouched: choose another --out or move that file away`);
  expect(fs.readFileSync(out)).toEqual(before);
});
