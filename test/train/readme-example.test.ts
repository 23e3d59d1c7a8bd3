/**
 * The README's `Trainer` API example, run as written there: the ```ts block under
 * "## The `Trainer` API" is extracted, transpiled and executed in a temporary folder. The only
 * changes make it small enough for a test: a smaller demo set (`ensureDemoDataset()` gets a
 * folder and 40 images at 32 px), 32 px instead of 64 px training, 2 folds instead of 5 and 2
 * TTA views instead of 8; every other line is the README's.
 */
import { existsSync, readFileSync, readdirSync } from 'fs';
import * as path from 'path';
import * as ts from 'typescript';
import { tempDir } from './tiny-data';

const README = path.resolve(__dirname, '..', '..', 'README.md');

function readmeExample(): string {
  const text = readFileSync(README, 'utf8');
  const section = text.slice(text.indexOf('## The `Trainer` API'));
  const match = /```ts\n([\s\S]*?)```/.exec(section);
  if (!match) throw new Error('README: no ```ts block under "## The `Trainer` API"');
  return match[1];
}

const dir = tempDir('melanoma-readme-');

test('the README example runs: fit, predict, save, resume, crossValidate, predict()', async () => {
  const source = readmeExample();
  expect(source.split('\n').filter((l) => l.trim()).length).toBeLessThanOrEqual(22);
  const call = 'await ensureDemoDataset()';
  expect(source).toContain(call);
  expect(source.match(/imageSize: 64/g)).toHaveLength(2);
  const smaller = source
    .replace(call, `await ensureDemoDataset({ dir: ${JSON.stringify(path.join(dir, 'demo'))}, images: 40, size: 32 })`)
    .replace(/imageSize: 64/g, 'imageSize: 32')
    .replace('crossValidate({ data, folds: 5,', 'crossValidate({ data, folds: 2,')
    .replace('tta: 8,', 'tta: 2,');
  expect(smaller).toContain('folds: 2,');
  expect(smaller).toContain('tta: 2,');
  const js = ts.transpileModule(smaller, { compilerOptions: { module: ts.ModuleKind.CommonJS, target: ts.ScriptTarget.ES2022 } }).outputText;
  const logged: string[] = [];
  const fakeConsole = { ...console, log: (...args: unknown[]) => logged.push(args.join(' ')) };
  const requireShim = (name: string) => (name === 'melanoma-native' ? require('../../src/index') : require(name));
  const AsyncFunction = Object.getPrototypeOf(async () => undefined).constructor as new (...args: string[]) => (...a: unknown[]) => Promise<void>;
  const cwd = process.cwd();
  process.chdir(dir);
  try {
    await new AsyncFunction('require', 'exports', 'console', js)(requireShim, {}, fakeConsole);
  } finally {
    process.chdir(cwd);
  }
  // 2 epochs logged with their lr (cosine: lower in epoch 2), then 1 more after Trainer.load.
  const epochs = logged.filter((l) => l.startsWith('epoch '));
  expect(epochs).toHaveLength(2);
  const lrs = epochs.map((l) => Number(/lr (\S+)$/.exec(l)![1]));
  expect(lrs[1]).toBeLessThan(lrs[0]);
  expect(logged).toContain('resumed to epoch 3');
  expect(logged.find((l) => l.startsWith('pooled out-of-fold AUC'))).toMatch(/^pooled out-of-fold AUC 0\.\d{3} in runs[/\\].*-cv2$/);
  expect(existsSync(path.join(dir, 'demo.safetensors'))).toBe(true);
  const submission = readFileSync(path.join(dir, 'submission.csv'), 'utf8').trim().split('\n');
  expect(submission[0]).toBe('image_name,target');
  expect(submission).toHaveLength(41);
  expect(readdirSync(path.join(dir, 'runs'))).toHaveLength(1);
});
