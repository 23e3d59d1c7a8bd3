/** The bench command's sweep lists: a bad list or item is a usage error (exit 2) naming it. */
import { spawnSync } from 'child_process';
import * as path from 'path';

const CLI = path.resolve(__dirname, '../../dist/cli.js');

test.each([
  [['--precisions', 'fp64'], "error: option '--precisions <list>' argument 'fp64' is invalid. expected one of fp32, bf16, fp16 for --precisions but received 'fp64'"],
  [['--batch-sizes', '8,,32'], "error: option '--batch-sizes <list>' argument '8,,32' is invalid. expected a comma-separated list for --batch-sizes but received '8,,32'"],
  [['--batch-sizes', '8,0'], "error: option '--batch-sizes <list>' argument '8,0' is invalid. expected an integer >= 1 for --batch-sizes but received '0'"],
  [['--graph-modes', 'maybe'], "error: option '--graph-modes <list>' argument 'maybe' is invalid. expected one of on, off for --graph-modes but received 'maybe'"],
  [['--models', 'efficientnet-b9'], "error: option '--models <list>' argument 'efficientnet-b9' is invalid. expected one of efficientnet-b0, efficientnet-b1, efficientnet-b2, efficientnet-b3, efficientnet-b4, efficientnet-b5, efficientnet-b6, efficientnet-b7 for --models but received 'efficientnet-b9'"],
])('bench %j: exit 2 with the exact message', (args, message) => {
  const run = spawnSync(process.execPath, [CLI, 'bench', ...args], { encoding: 'utf8' });
  expect(run.status).toBe(2);
  expect(run.stderr.split('\n')[0]).toBe(message);
  expect(run.stdout).toBe('');
});
