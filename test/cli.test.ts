/** The melanoma command itself (dist/cli.js): its version and its list of commands. */
import { spawnSync } from 'child_process';
import { existsSync, readFileSync } from 'fs';
import * as path from 'path';

const ROOT = path.resolve(__dirname, '..');
const CLI = path.join(ROOT, 'dist', 'cli.js');

(existsSync(CLI) ? describe : describe.skip)('melanoma (dist/cli.js)', () => {
  test('--version and -V print the version of package.json and exit 0', () => {
    const { version } = JSON.parse(readFileSync(path.join(ROOT, 'package.json'), 'utf8')) as { version: string };
    for (const flag of ['--version', '-V']) {
      const run = spawnSync(process.execPath, [CLI, flag], { encoding: 'utf8' });
      expect(run.stderr).toBe('');
      expect(run.status).toBe(0);
      expect(run.stdout.trim()).toBe(version);
    }
  });

  test('--help lists every command and the version flag; an unknown command exits 2', () => {
    const help = spawnSync(process.execPath, [CLI, '--help'], { encoding: 'utf8' });
    expect(help.status).toBe(0);
    for (const command of ['train', 'cv', 'predict', 'evaluate', 'calibrate', 'ensemble', 'explain', 'convert', 'inspect', 'bench'])
      expect(help.stdout).toMatch(new RegExp(`^  ${command}\\b`, 'm'));
    expect(help.stdout).toContain('-V, --version');
    const unknown = spawnSync(process.execPath, [CLI, 'trian'], { encoding: 'utf8' });
    expect(unknown.status).toBe(2);
    expect(unknown.stderr).toContain("error: unknown command 'trian'");
  });

  test("an action's own check of an option (after parsing) prints its message and exits 2", () => {
    for (const [args, message] of [
      [['bench', '--data-only', '--sizes', '7'], "error: expected an integer >= 32 for --sizes but received '7'"],
      [['inspect', '.', '--folds', '1'], 'error: --folds must be 0 (none) or >= 2'],
    ] as const) {
      const run = spawnSync(process.execPath, [CLI, ...args], { encoding: 'utf8' });
      expect(run.status).toBe(2);
      expect(run.stderr.trim()).toBe(message);
    }
  });

  test('option errors from the Trainer name the flags the user typed, not the API names', () => {
    for (const [args, message] of [
      [['train', '--lr', '-1'], 'error: Expected number in (0, 10] for --lr but received -1 of type number'],
      [['train', '--image-size', '7'], 'error: Expected integer between 32 and 2048 for --image-size but received 7 of type number'],
      [['cv', '--width-factor', '9'], 'error: Expected number in [0.05, 4] for --width-factor but received 9 of type number'],
      // An option whose flag is not its name: imageSizes is --progressive.
      [['train', '--progressive', '32:1,64:2', '--epochs', '2'], 'error: Expected integer >= 3 for --epochs (the progressive stages (imageSizes) 32:1,64:2 take 3 epochs) but received 2: give more epochs, or leave out the stages that are not to be trained'],
      [['train', '--progressive', '16:1'], 'error: Expected integer between 32 and 2048 for --progressive[0].size but received 16 of type number'],
    ] as const) {
      const run = spawnSync(process.execPath, [CLI, ...args], { encoding: 'utf8' });
      expect(run.status).toBe(2);
      expect(run.stderr.trim()).toBe(message);
    }
  });
});
