/**
 * libuv's pool is sized from the cores before first use (sharp decodes there), and a size the
 * user chose is kept. Run in child processes: the pool size is fixed per process.
 */
import { execFileSync } from 'child_process';
import * as path from 'path';
import { defaultThreadpoolSize } from '../../src/threadpool';

const ROOT = path.resolve(__dirname, '../..');

function poolSizeSeenBy(env: NodeJS.ProcessEnv): string {
  const script = "require('./dist/index.js'); console.log(process.env.UV_THREADPOOL_SIZE)";
  return execFileSync(process.execPath, ['-e', script], { cwd: ROOT, env, encoding: 'utf8' }).trim();
}

describe('UV_THREADPOOL_SIZE', () => {
  test('one thread per core, never fewer than libuv default of 4', () => {
    expect(defaultThreadpoolSize(2)).toBe(4);
    expect(defaultThreadpoolSize(16)).toBe(16);
    expect(defaultThreadpoolSize(4096)).toBe(1024); // libuv's maximum
  });

  test('importing the package sets it when unset and keeps a value the user set', () => {
    const { UV_THREADPOOL_SIZE: _unset, ...withoutSize } = process.env;
    expect(poolSizeSeenBy(withoutSize)).toBe(String(defaultThreadpoolSize()));
    expect(poolSizeSeenBy({ ...withoutSize, UV_THREADPOOL_SIZE: '7' })).toBe('7');
  });
});
