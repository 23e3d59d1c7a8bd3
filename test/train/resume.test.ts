/**
 * Resume: a run continued from its run folder equals an uninterrupted one on CPU, through the API
 * and through the CLI after a SIGINT in the middle of an epoch. Ctrl-C saves last.safetensors
 * with how far the epoch got, and resume continues that epoch from the next batch.
 */
import { spawn, spawnSync } from 'child_process';
import { copyFileSync, existsSync, mkdirSync, readFileSync, readdirSync, writeFileSync } from 'fs';
import * as path from 'path';
import { readSafetensorsFile } from '../../src/train/safetensors';
import { TrainRunResult, resumeRun, trainRun } from '../../src/train/run';
import { crossValidate } from '../../src/train/cv';
import { TINY_CLI_FLAGS, TINY_OPTIONS, tempDir, tinyDataset } from './tiny-data';

const CLI = path.resolve(__dirname, '..', '..', 'dist', 'cli.js');
const root = tempDir();
let data: string;
let uninterrupted: TrainRunResult;
beforeAll(async () => {
  data = await tinyDataset(root, 32);
  uninterrupted = await trainRun({ ...TINY_OPTIONS, data, folds: 4, epochs: 3, runsDir: path.join(root, 'whole') });
});

const losses = (r: { history: { trainLoss: number; validLoss: number | null }[] }) => r.history.map((h) => [h.trainLoss, h.validLoss]);

test('1 epoch + resume for 2 more gives the same history as 3 epochs at once', async () => {
  const first = await trainRun({ ...TINY_OPTIONS, data, folds: 4, epochs: 1, runsDir: path.join(root, 'api') });
  expect(first.history).toHaveLength(1);
  const resumed = await resumeRun(first.runDir, { epochs: 3 });
  expect(resumed.runDir).toBe(first.runDir);
  expect(losses(resumed)).toEqual(losses(uninterrupted));
  const rows = readFileSync(path.join(first.runDir, 'history.csv'), 'utf8').trim().split('\n');
  expect(rows.slice(1).map((r) => r.split(',')[0])).toEqual(['1', '2', '3']);
});

test('with gradient accumulation across epoch ends, 1 epoch + resume equals 2 epochs at once', async () => {
  // 24 training images in batches of 8: 3 micro-batches per epoch, windows of 2 and then 1.
  const options = { ...TINY_OPTIONS, data, folds: 4, accumulate: 2 };
  const whole = await trainRun({ ...options, epochs: 2, runsDir: path.join(root, 'accumulate-whole') });
  const first = await trainRun({ ...options, epochs: 1, runsDir: path.join(root, 'accumulate-resumed') });
  const resumed = await resumeRun(first.runDir, { epochs: 2 });
  expect(whole.history.map((h) => h.step)).toEqual([2, 4]);
  expect(losses(resumed)).toEqual(losses(whole));
});

test('extending a cosine run says that the rate goes back up, and by how much', async () => {
  const options = { ...TINY_OPTIONS, data, folds: 4, schedule: 'cosine' as const, lr: 2e-3, minLr: 1e-5 };
  const first = await trainRun({ ...options, epochs: 1, runsDir: path.join(root, 'cosine') });
  const lines: string[] = [];
  const resumed = await resumeRun(first.runDir, { epochs: 3, log: (line) => lines.push(line) });
  // Epoch 2 of 3 starts a third of the way down the stretched curve.
  const next = 1e-5 + (2e-3 - 1e-5) * 0.5 * (1 + Math.cos(Math.PI / 3));
  expect(lines).toContain(
    `the cosine schedule now spans 3 epochs, so the rate goes back up: training continues at lr ${next.toExponential(2)} (epoch 1 ended at ${first.history[0].lr.toExponential(2)})`,
  );
  expect(resumed.history[1].lr).toBeGreaterThan(first.history[0].lr);
  // A cosine run stopped after epoch 1 of 3 and resumed as it was: the rate keeps falling, no note.
  const stop = new AbortController();
  const stopped = await trainRun({ ...options, epochs: 3, runsDir: path.join(root, 'cosine-stopped'), signal: stop.signal, onEpoch: () => stop.abort() });
  expect(stopped.history).toHaveLength(1);
  const quiet: string[] = [];
  const finished = await resumeRun(stopped.runDir, { log: (line) => quiet.push(line) });
  expect(finished.history).toHaveLength(3);
  expect(quiet.filter((l) => l.includes('goes back up'))).toEqual([]);

  // Stopped inside epoch 2 of 3: resumed as it was, no note; extended to 6 epochs, the note
  // compares with the rate at the checkpoint.
  for (const [epochs, expectNote] of [[undefined, false], [6, true]] as const) {
    const inside = new AbortController();
    const partly = await trainRun({ ...options, epochs: 3, runsDir: path.join(root, `cosine-inside-${epochs}`), signal: inside.signal, onBatch: (b) => b.epoch === 2 && inside.abort() });
    const notes: string[] = [];
    await resumeRun(partly.runDir, { epochs, log: (line) => notes.push(line) });
    const note = notes.filter((l) => l.includes('goes back up'));
    if (expectNote) expect(note[0]).toMatch(/so the rate goes back up: training continues at lr \S+ \(the checkpoint, 2 batches into epoch 2, was at \S+\)$/);
    else expect(note).toEqual([]);
  }
});

/** Every file of a run folder with its bytes. */
function folderBytes(dir: string): Record<string, string> {
  return Object.fromEntries(readdirSync(dir).map((name) => [name, readFileSync(path.join(dir, name)).toString('base64')]));
}

test("a checkpoint copied in from another run or another fold is refused, and the run's files are left as they were", async () => {
  const run = await trainRun({ ...TINY_OPTIONS, data, folds: 4, epochs: 1, runsDir: path.join(root, 'swap-run') });
  const ownCheckpoint = readFileSync(path.join(run.runDir, 'last.safetensors'));
  const checkpoint = path.join(run.runDir, 'last.safetensors');
  // Another run: another architecture and seed.
  const other = await trainRun({ ...TINY_OPTIONS, data, folds: 4, epochs: 1, widthFactor: 0.5, seed: 7, runsDir: path.join(root, 'swap-other') });
  copyFileSync(path.join(other.runDir, 'last.safetensors'), checkpoint);
  let before = folderBytes(run.runDir);
  await expect(resumeRun(run.runDir, { epochs: 2 })).rejects.toThrow(
    `${checkpoint} is not this run's checkpoint: it was made with seed 7 where config.json has 42, widthFactor 0.5 where config.json has 0.25; put the run's own last.safetensors back, or start a new run (nothing was changed)`,
  );
  expect(folderBytes(run.runDir)).toEqual(before);
  // The same options, another fold: its training set gives it away.
  const fold1 = await trainRun({ ...TINY_OPTIONS, data, folds: 4, fold: 1, epochs: 1, runsDir: path.join(root, 'swap-fold') });
  copyFileSync(path.join(fold1.runDir, 'last.safetensors'), checkpoint);
  before = folderBytes(run.runDir);
  await expect(resumeRun(run.runDir, { epochs: 2 })).rejects.toThrow(
    new RegExp(`^${checkpoint.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')} is not this run's checkpoint: it last trained on another training set than fold 0's \\(fingerprint [0-9a-f]{16}, this fold's [0-9a-f]{16}: another fold's checkpoint, or images added or relabelled since\\); put the run's own last.safetensors back`),
  );
  expect(folderBytes(run.runDir)).toEqual(before);
  // Its own checkpoint back: the resume goes on.
  writeFileSync(checkpoint, ownCheckpoint);
  expect((await resumeRun(run.runDir, { epochs: 2 })).history).toHaveLength(2);
});

test('resume refuses a folder that is not a run', async () => {
  await expect(resumeRun(path.join(root, 'nowhere'))).rejects.toThrow(/^Cannot resume .*nowhere: no config.json there; pass a run folder made by `melanoma train`/);
  // A damaged config.json is named (it used to surface as a bare JSON.parse message).
  const damaged = path.join(root, 'damaged');
  mkdirSync(damaged, { recursive: true });
  writeFileSync(path.join(damaged, 'config.json'), '{bad json');
  const config = path.join(damaged, 'config.json');
  await expect(resumeRun(damaged)).rejects.toThrow(`Cannot resume ${damaged}: ${config} is not valid JSON (`);
  await expect(crossValidate({ resume: damaged })).rejects.toThrow(/\): restore that file, or pass a folder made by `melanoma cv`$/);
});

describe('the CLI after SIGINT in the middle of an epoch', () => {
  const haveDist = existsSync(CLI);

  /** `train` on the tiny set, sent `signal` once the first batch of epoch 2 is done: its exit code and output. */
  async function trainUntilSignal(runsDir: string, signal: NodeJS.Signals): Promise<{ code: number | null; out: string }> {
    // Batches of 2: 12 an epoch, so the signal lands well inside epoch 2.
    const args = [CLI, 'train', '--data', data, '--folds', '4', '--epochs', '3', '--runs-dir', runsDir, '--log-every', '1', ...TINY_CLI_FLAGS, '--batch-size', '2'];
    const child = spawn(process.execPath, args, { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let sent = false;
    child.stdout.on('data', (chunk: Buffer) => {
      out += chunk.toString();
      // The first batch of epoch 2 is done and three more follow: the signal lands mid-epoch.
      if (!sent && out.includes('epoch 2 batch 1/')) {
        sent = true;
        child.kill(signal);
      }
    });
    child.stderr.on('data', (chunk: Buffer) => (out += chunk.toString()));
    const code = await new Promise<number | null>((resolve) => child.on('close', resolve));
    expect(sent).toBe(true);
    return { code, out };
  }
  (haveDist ? test : test.skip)(`Ctrl-C saves a checkpoint and exits 130; train --resume finishes with the uninterrupted history${haveDist ? '' : ' [SKIPPED: run npm run build:ts]'}`, async () => {
    const { code, out } = await trainUntilSignal(path.join(root, 'cli'), 'SIGINT');
    expect(code).toBe(130);
    // With --log-every, an epoch's row comes below its batch lines with the table header again.
    expect(out).toMatch(/\nepoch 1 batch 12\/12 [^\n]*\nepoch +train_loss +valid_loss[^\n]*\n +1 /);
    const runDir = /run folder: (\S+)/.exec(out)![1];
    expect(out).toContain(`resume with: melanoma train --resume ${runDir}`);
    expect(out).toMatch(/aborted during epoch 2 after \d+ of 12 batches/);
    const last = await readSafetensorsFile(path.join(runDir, 'last.safetensors'));
    expect(Number(last.metadata['melanoma.epochs_done'])).toBe(1);
    const inProgress = JSON.parse(last.metadata['melanoma.epoch_in_progress']);
    expect(inProgress.epoch).toBe(2);
    expect(Number(last.metadata['melanoma.step'])).toBe(12 + inProgress.batches); // epoch 1's 12 steps and those of epoch 2
    expect(out).toContain(`saved ${path.join(runDir, 'last.safetensors')}; resume continues epoch 2 from batch ${inProgress.batches + 1}`);

    const resumed = spawnSync(process.execPath, [CLI, 'train', '--resume', runDir], { encoding: 'utf8' });
    expect(resumed.stderr).toBe('');
    expect(resumed.status).toBe(0);
    expect(resumed.stdout).toContain(`resuming ${runDir} in epoch 2 of 3, after ${inProgress.batches} of 12 batches`);
    const history = readFileSync(path.join(runDir, 'history.jsonl'), 'utf8').trim().split('\n').map((l) => JSON.parse(l));
    // The CLI flags are TINY_OPTIONS with the full depth (no --stage-limit flag).
    const whole = await trainRun({ ...TINY_OPTIONS, stageLimit: 7, batchSize: 2, data, folds: 4, epochs: 3, runsDir: path.join(root, 'whole-cli') });
    expect(losses({ history })).toEqual(losses(whole));
    expect(existsSync(path.join(runDir, 'evaluation.json'))).toBe(true);

    const changed = spawnSync(process.execPath, [CLI, 'train', '--resume', runDir, '--lr', '0.1'], { encoding: 'utf8' });
    expect(changed.status).toBe(2);
    expect(changed.stderr.trim()).toBe(
      'error: --lr cannot be combined with --resume: a resumed run keeps its own options (only --epochs, --workers, --decode and --checkpoint-minutes may change); start a new `melanoma train` to change them',
    );
  });

  // What `timeout`, `docker stop` and Slurm send: the same clean stop, exit 128 + 15.
  (haveDist ? test : test.skip)('SIGTERM stops the same way: a checkpoint inside the epoch, the resume command, exit 143', async () => {
    const { code, out } = await trainUntilSignal(path.join(root, 'cli-term'), 'SIGTERM');
    expect(code).toBe(143);
    expect(out).toContain('SIGTERM: stopping after this batch (or accumulation window) and saving a checkpoint there');
    const runDir = /run folder: (\S+)/.exec(out)![1];
    expect(out).toContain(`resume with: melanoma train --resume ${runDir}`);
    const last = await readSafetensorsFile(path.join(runDir, 'last.safetensors'));
    expect(JSON.parse(last.metadata['melanoma.epoch_in_progress']).epoch).toBe(2);
  });
});
