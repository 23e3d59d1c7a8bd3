import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { Command } from 'commander';
import { evaluatePredictionsFile, registerEvaluateCommand } from '../../src/cli/evaluate';
import { syntheticPredictionsCsv } from './fixtures';

let dir: string;
let csv: string;
beforeAll(() => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'evaluate-'));
  csv = path.join(dir, 'preds.csv');
  fs.writeFileSync(csv, syntheticPredictionsCsv({ patients: 200, seed: 5 }));
});
afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

describe('evaluatePredictionsFile', () => {
  test('writes evaluation.json and report.html; refuses to overwrite without force', async () => {
    const out = path.join(dir, 'run1');
    const r = await evaluatePredictionsFile(csv, { out, bootstrap: 20 });
    expect(r.written).toEqual([path.join(out, 'evaluation.json'), path.join(out, 'report.html')]);
    // Written through temporaries and renamed: none is left beside them.
    expect(fs.readdirSync(out).sort()).toEqual(['evaluation.json', 'report.html']);
    const json = JSON.parse(fs.readFileSync(r.written[0], 'utf8'));
    expect(json.auc.value).toBe(r.evaluation.auc.value);
    expect(json.source).toBe('preds.csv');
    expect(fs.readFileSync(r.written[1], 'utf8')).toContain('<svg id="roc-plot"');
    const before = fs.readFileSync(r.written[0], 'utf8');
    await expect(evaluatePredictionsFile(csv, { out, bootstrap: 20 })).rejects.toThrow(
      `Refusing to overwrite ${path.join(out, 'evaluation.json')} and ${path.join(out, 'report.html')}: expected a directory without earlier results; pass --force (force: true) to replace them`,
    );
    expect(fs.readFileSync(r.written[0], 'utf8')).toBe(before);
    const again = await evaluatePredictionsFile(csv, { out, bootstrap: 20, force: true, targetSensitivity: 0.9 });
    expect(JSON.parse(fs.readFileSync(again.written[0], 'utf8')).operatingPoints.atTargetSensitivity.targetSensitivity).toBe(0.9);
  });

  test('a run folder (valid_predictions.csv) or cv folder (oof_predictions.csv) is evaluated through its predictions file', async () => {
    for (const name of ['valid_predictions.csv', 'oof_predictions.csv']) {
      const folder = path.join(dir, `folder-${name}`);
      fs.mkdirSync(folder);
      fs.copyFileSync(csv, path.join(folder, name));
      const r = await evaluatePredictionsFile(folder, { bootstrap: 0 });
      expect(r.evaluation.source).toBe(name);
      expect(r.evaluation.auc.value).toBe((await evaluatePredictionsFile(csv, { bootstrap: 0 })).evaluation.auc.value);
    }
    await expect(evaluatePredictionsFile(dir, { bootstrap: 0 })).rejects.toThrow(`${dir} holds neither oof_predictions.csv nor valid_predictions.csv`);
  });

  test('one existing output file is enough to refuse', async () => {
    const out = path.join(dir, 'run2');
    fs.mkdirSync(out);
    fs.writeFileSync(path.join(out, 'report.html'), 'keep me');
    await expect(evaluatePredictionsFile(csv, { out })).rejects.toThrow(`Refusing to overwrite ${path.join(out, 'report.html')}`);
    expect(fs.readFileSync(path.join(out, 'report.html'), 'utf8')).toBe('keep me');
    expect(fs.existsSync(path.join(out, 'evaluation.json'))).toBe(false);
  });

  test('without out: evaluation only', async () => {
    expect((await evaluatePredictionsFile(csv, { bootstrap: 0 })).written).toEqual([]);
  });
});

describe('evaluate command', () => {
  async function run(args: string[]): Promise<{ stdout: string; stderr: string; error: Error | null }> {
    const program = new Command('melanoma').exitOverride();
    let stdout = '';
    let stderr = '';
    program.configureOutput({ writeOut: (t) => (stdout += t), writeErr: (t) => (stderr += t) });
    registerEvaluateCommand(program);
    program.commands.forEach((c) => c.exitOverride().configureOutput({ writeOut: (t) => (stdout += t), writeErr: (t) => (stderr += t) }));
    const write = process.stdout.write;
    process.stdout.write = ((t: string) => ((stdout += t), true)) as typeof process.stdout.write;
    try {
      await program.parseAsync(['node', 'melanoma', ...args]);
      return { stdout, stderr, error: null };
    } catch (e) {
      return { stdout, stderr, error: e as Error };
    } finally {
      process.stdout.write = write;
    }
  }

  test('all options reach the evaluation', async () => {
    const out = path.join(dir, 'cli1');
    const r = await run(['evaluate', csv, '--out', out, '--threshold', '0.7', '--target-sensitivity', '0.9', '--patient-aggregation', 'mean', '--bootstrap', '30', '--seed', '4', '--min-tpr', '0.5', '--sensitivities', '0.85,0.99', '--thresholds', '0.2,0.4']);
    expect(r.error).toBeNull();
    expect(r.stdout).toContain(`wrote ${path.join(out, 'report.html')}`);
    const e = JSON.parse(fs.readFileSync(path.join(out, 'evaluation.json'), 'utf8'));
    expect(e.options).toMatchObject({ threshold: 0.7, targetSensitivity: 0.9, patientAggregation: 'mean', bootstrap: 30, seed: 4, minTpr: 0.5, sensitivities: [0.85, 0.99], thresholds: [0.2, 0.4] });
    expect(e.operatingPoints.atThresholds.map((p: { threshold: number }) => p.threshold)).toEqual([0.2, 0.4]);
    expect(r.stdout).toMatch(/\n {2}Sensitivity ≥ 85%: sensitivity \d+\.\d%, specificity \d+\.\d% \(threshold /);
    // Thresholds as people read them (4 significant digits); the JSON keeps them whole.
    const printed = [...r.stdout.matchAll(/\(threshold ([^,]+),/g)].map((m) => m[1]);
    expect(printed.length).toBeGreaterThan(2);
    for (const t of printed) expect(t.replace(/^-?0?\.?0*/, '').replace('.', '').replace(/e.*$/, '').length).toBeLessThanOrEqual(4);
    expect(r.stdout).toMatch(/\n {2}Fixed threshold 0\.4: sensitivity /);
    expect(e.unit).toBe('patient');
  });

  test('EXPECTED FAILURE: existing output, bad numbers, bad choice, bad file', async () => {
    const out = path.join(dir, 'cli2');
    expect((await run(['evaluate', csv, '--out', out, '--bootstrap', '0'])).error).toBeNull();
    const again = await run(['evaluate', csv, '--out', out]);
    expect(again.error).not.toBeNull();
    expect(again.stderr).toContain(`error: Refusing to overwrite ${path.join(out, 'evaluation.json')}`);
    expect((await run(['evaluate', csv, '--out', out, '--force', '--bootstrap', '0'])).error).toBeNull();
    expect((await run(['evaluate', csv, '--bootstrap', 'many'])).stderr).toContain(
      `error: option '--bootstrap <n>' argument 'many' is invalid. Expected a non-negative integer for --bootstrap but received "many".`,
    );
    expect((await run(['evaluate', csv, '--target-sensitivity', '1.5'])).stderr).toContain('Expected a number in (0, 1] for --target-sensitivity but received "1.5"');
    expect((await run(['evaluate', csv, '--patient-aggregation', 'median'])).stderr).toContain("Allowed choices are none, max, mean");
    const bad = path.join(dir, 'bad.csv');
    fs.writeFileSync(bad, 'image_name,target,score\nA,1,0.3\nB,0,oops\n');
    expect((await run(['evaluate', bad])).stderr).toContain(`error: ${bad}: row 2 (line 3), column "score": expected a finite number but received "oops"`);
  });
});
