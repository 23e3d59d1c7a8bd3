#!/usr/bin/env node
// npm runs this on `npm install` / `npm ci` (package.json "install").
//
// - The io addon (binding.gyp: TFRecord framing, CRC32C, tf.Example; no LibTorch) is always
//   built with node-gyp, as npm would do by itself for a package with a binding.gyp.
// - Run by npm in this project itself (a checkout) that is all: scripts/setup.sh and
//   `npm run build` build the engine and the TypeScript afterwards.
// - Installed as a package (`npm install melanoma-native`), the engine addon is built here too,
//   against the LibTorch that CMakeLists.txt finds, and then loaded once, so a missing LibTorch
//   or a library path problem is reported now, with the fix, rather than at the first training
//   run. npm shows an install script's output only when it fails, so a failed engine fails the
//   install. MELANOMA_SKIP_ENGINE=1 installs without it (data, metrics, reports and calibration
//   work; training and prediction then say how to build it).
'use strict';
const { spawnSync } = require('child_process');
const fs = require('fs');
const path = require('path');

const root = path.resolve(__dirname, '..');

function run(what, command, args) {
  const result = spawnSync(command, args, { cwd: root, stdio: 'inherit' });
  if (result.error) throw new Error(`${what}: cannot run ${command} (${result.error.message})`);
  if (result.status !== 0) throw new Error(`${what} failed (exit ${result.status ?? result.signal}); its output is above`);
}

function buildIo() {
  // npm puts its own node-gyp on PATH for lifecycle scripts and names it in npm_config_node_gyp.
  const gyp = process.env.npm_config_node_gyp;
  if (gyp && fs.existsSync(gyp)) run('building the io addon (node-gyp)', process.execPath, [gyp, 'rebuild']);
  else run('building the io addon (node-gyp)', 'node-gyp', ['rebuild']);
}

const ENGINE_NEEDS =
  'the training engine needs CMake, a C++17 compiler and LibTorch: sudo apt-get install -y cmake g++ libtorch-dev ' +
  '(Debian/Ubuntu, CPU); or Torch_DIR=/path/to/libtorch/share/cmake/Torch npm install ...; or ' +
  "CMAKE_PREFIX_PATH=$(python3 -c 'import torch;print(torch.utils.cmake_prefix_path)') npm install ...; " +
  'or MELANOMA_SKIP_ENGINE=1 npm install ... to install without it.';

function buildEngine() {
  const cmakeJs = require.resolve('cmake-js/bin/cmake-js', { paths: [root] });
  try {
    run('building the engine addon (cmake-js, LibTorch)', process.execPath, [cmakeJs, 'compile', '--out', 'native/engine/build']);
  } catch (err) {
    throw new Error(`${err.message}\nmelanoma-native: ${ENGINE_NEEDS}`);
  }
  // Loaded in a child process: it must find LibTorch's shared libraries at run time too.
  const check = spawnSync(process.execPath, ['-e', "console.log(JSON.stringify(require('./dist/native').torchInfo()))"], { cwd: root, encoding: 'utf8' });
  if (check.status !== 0) throw new Error(`the engine addon was built but does not load:\n${check.stderr.trim()}\nmelanoma-native: ${ENGINE_NEEDS}`);
  console.log(`melanoma-native: engine ready: ${check.stdout.trim()}`);
}

function main() {
  buildIo();
  // npm ci / npm install in this project itself (a checkout): setup.sh and npm run build do the rest.
  // INIT_CWD is where npm was started; installed as a dependency, that is the other project.
  if (path.resolve(process.env.INIT_CWD || '.') === root) return;
  if (process.env.MELANOMA_SKIP_ENGINE === '1') {
    console.log('melanoma-native: MELANOMA_SKIP_ENGINE=1: the training engine was not built (build it later: npm run build:engine in this package)');
    return;
  }
  buildEngine();
}

try {
  main();
} catch (err) {
  // The engine's failures carry what it needs; an io addon failure is node-gyp's, shown above.
  console.error(`melanoma-native: ${err.message}`);
  process.exit(1);
}
