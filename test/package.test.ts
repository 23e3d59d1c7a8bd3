/**
 * What `npm pack` puts in the package: every source the two addon builds need, the compiled
 * TypeScript and the install script; none of this machine's build outputs (object files, a
 * CMake cache with this machine's paths, an engine.node linked against this machine's LibTorch).
 * `bash scripts/check-package.sh` (CI) installs the packed package into a new project and trains
 * with it.
 */
import { execFileSync } from 'child_process';
import { readFileSync } from 'fs';
import * as path from 'path';

const ROOT = path.resolve(__dirname, '..');

function packedFiles(): string[] {
  // --ignore-scripts: no prepack rebuild of dist/ (the tests already run against a built dist/).
  const out = execFileSync('npm', ['pack', '--dry-run', '--json', '--ignore-scripts'], { cwd: ROOT, encoding: 'utf8' });
  return (JSON.parse(out) as { files: { path: string }[] }[])[0].files.map((f) => f.path).sort();
}

describe('npm pack', () => {
  const files = packedFiles();

  test('holds exactly the tracked native sources, and no build output', () => {
    const tracked = execFileSync('git', ['ls-files', 'native'], { cwd: ROOT, encoding: 'utf8' }).split('\n').filter(Boolean).sort();
    expect(tracked.length).toBeGreaterThan(10);
    expect(files.filter((f) => f.startsWith('native/'))).toEqual(tracked);
    expect(files.filter((f) => /(^|\/)build\/|\.(o|node|ninja)$|CMakeCache/.test(f))).toEqual([]);
  });

  test('every source named by binding.gyp and CMakeLists.txt is packed', () => {
    const named = [readFileSync(path.join(ROOT, 'binding.gyp'), 'utf8'), readFileSync(path.join(ROOT, 'CMakeLists.txt'), 'utf8')]
      .flatMap((text) => text.match(/native\/[A-Za-z0-9_/]+\.cc/g) ?? []);
    expect(named).toEqual(expect.arrayContaining(['native/io/addon.cc', 'native/engine/engine.cc', 'native/engine/jpeg_decoder.cc']));
    for (const source of named) expect(files).toContain(source);
    for (const file of ['binding.gyp', 'CMakeLists.txt', 'package.json', 'README.md', 'scripts/install.js', 'dist/index.js', 'dist/index.d.ts', 'dist/cli.js', 'dist/native.js']) {
      expect(files).toContain(file);
    }
  });

  test('installing builds both addons (the install script), and the CLI is the bin', () => {
    const pkg = JSON.parse(readFileSync(path.join(ROOT, 'package.json'), 'utf8'));
    expect(pkg.scripts.install).toBe('node scripts/install.js');
    expect(pkg.bin.melanoma).toBe('dist/cli.js');
    // Everything the install script and the engine build use at install time is a production dependency.
    for (const dep of ['cmake-js', 'node-addon-api', 'node-api-headers', 'node-gyp-build']) expect(Object.keys(pkg.dependencies)).toContain(dep);
  });
});
