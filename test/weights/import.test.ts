/**
 * Weights import from the committed fixtures (no Python needed): two width-0.25 EfficientNet-B0
 * state dicts written by PyTorch 1.13 (test/weights/parity.py --fixtures), float16:
 * - torchvision layout, torch.save zip format, symmetric padding;
 * - lukemelas layout, legacy torch.save format, TF SAME padding, BN eps 1e-3, no num_batches_tracked;
 * with PyTorch's logits for three 64 px images. The real engine must reproduce them to 1e-4.
 */
import { createHash } from 'crypto';
import { copyFileSync, mkdirSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'fs';
import * as os from 'os';
import * as path from 'path';
import { Command } from 'commander';
import { registerWeightsCommand } from '../../src/cli/weights';
import { ImportWeightsResult, WeightsError, decodeWeights, importWeights, readWeightsFile } from '../../src/model/weights';
import type { NamedTensor } from '../../src/native';
import { decodeSafetensors, encodeSafetensors } from '../../src/train/safetensors';
import { Trainer } from '../../src/train/trainer';
import { FIXTURES, engineLogits, maxAbsDiff, readManifest, spread } from './helpers';

const { manifest, images } = readManifest(FIXTURES);
const TV = path.join(FIXTURES, 'torchvision-b0-w025-f16.pth');
const LM = path.join(FIXTURES, 'lukemelas-b0-w025-f16.pth');
const reference = (file: string) => manifest.cases.find((c) => c.file === path.basename(file))!.logits;

let dir: string;
beforeAll(() => {
  dir = mkdtempSync(path.join(os.tmpdir(), 'melanoma-weights-'));
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const imported = new Map<string, ImportWeightsResult>();
async function importOnce(file: string): Promise<ImportWeightsResult> {
  if (!imported.has(file)) imported.set(file, await importWeights(file, { weightsDir: path.join(dir, 'weights') }));
  return imported.get(file)!;
}

async function caught(promise: Promise<unknown>): Promise<WeightsError> {
  try {
    await promise;
  } catch (err) {
    if (err instanceof WeightsError) return err;
    throw err;
  }
  throw new Error('expected a WeightsError, but the call succeeded');
}

/** A safetensors file made of `tensors`, at `relative` under the test folder. */
function writeSafetensors(relative: string, tensors: NamedTensor[]): string {
  const file = path.join(dir, relative);
  mkdirSync(path.dirname(file), { recursive: true });
  writeFileSync(file, encodeSafetensors(tensors));
  return file;
}

function importedTensors(result: ImportWeightsResult): NamedTensor[] {
  return decodeSafetensors(readFileSync(result.file)).tensors;
}

describe('import of the committed fixtures', () => {
  test('torchvision zip file: layout, architecture, sidecar', async () => {
    const { info, file, sidecar } = await importOnce(TV);
    expect(info).toMatchObject({
      layout: 'torchvision',
      container: 'zip',
      model: 'efficientnet-b0',
      widthFactor: 0.25,
      padding: 'symmetric',
      bnEps: 1e-5,
      bnMomentum: 0.1,
      head: 'kept',
      dropped: [],
      engineChecked: true,
      name: 'efficientnet-b0-torchvision-w0.25',
      source: TV,
      sourceSha256: createHash('sha256').update(readFileSync(TV)).digest('hex'),
    });
    expect(info.notes).toContain('converted F16 weights to F32');
    expect(path.basename(file)).toBe('efficientnet-b0-torchvision-w0.25.safetensors');
    expect(JSON.parse(readFileSync(sidecar, 'utf8'))).toEqual(info);
    const tensors = importedTensors({ file, sidecar, info });
    expect(tensors.filter((t) => t.dtype !== 'F32').every((t) => t.name.endsWith('num_batches_tracked') && t.dtype === 'I64')).toBe(true);
    expect(tensors.map((t) => t.name)).toContain('blocks.1.0.conv_pwl.weight');
  });

  test('lukemelas legacy file: TF SAME padding, eps 1e-3, num_batches_tracked filled', async () => {
    const { info } = await importOnce(LM);
    expect(info).toMatchObject({ layout: 'lukemelas', container: 'legacy', model: 'efficientnet-b0', widthFactor: 0.25, padding: 'same', bnEps: 1e-3, bnMomentum: 0.01, head: 'kept' });
    expect(info.notes).toContain('49 BatchNorm num_batches_tracked counters absent from the file were set to 0 (unused: momentum is fixed)');
  });

  test.each([
    ['torchvision', TV],
    ['lukemelas', LM],
  ])('%s: the engine reproduces PyTorch logits to 1e-4', async (_layout, source) => {
    const { file, info } = await importOnce(source);
    const logits = await engineLogits(file, info, images, manifest.batch, manifest.size);
    const diff = maxAbsDiff(logits, reference(source));
    console.log(`parity ${path.basename(source)}: max |logit diff| ${diff.toExponential(2)} over ${manifest.batch} images (PyTorch ${manifest.torch})`);
    expect(diff).toBeLessThan(1e-4);
    // The images give different logits, so the comparison is not of a constant.
    expect(spread(logits)).toBeGreaterThan(0.1);
  });

  test('padding matters: the lukemelas weights with symmetric padding give other logits', async () => {
    const result = await importWeights(LM, { weightsDir: path.join(dir, 'weights'), name: 'lm-symmetric', padding: 'symmetric' });
    expect(result.info).toMatchObject({ padding: 'symmetric', bnEps: 1e-5, architectureReason: "padding 'symmetric' given as an option" });
    const logits = await engineLogits(result.file, { ...result.info, bnEps: 1e-3 }, images, manifest.batch, manifest.size);
    expect(maxAbsDiff(logits, reference(LM))).toBeGreaterThan(1e-2);
  });

  test('timm layout round trip: the engine file is a timm state dict; tf_ in the path means SAME padding', async () => {
    const tv = await importOnce(TV);
    const timmFile = path.join(dir, 'hub', 'efficientnet_b0.ra_in1k', 'model.safetensors');
    mkdirSync(path.dirname(timmFile), { recursive: true });
    copyFileSync(tv.file, timmFile);
    const timm = await importWeights(timmFile, { weightsDir: path.join(dir, 'weights') });
    expect(timm.info).toMatchObject({ layout: 'timm', container: 'safetensors', padding: 'symmetric', bnEps: 1e-5, name: 'efficientnet-b0-timm-w0.25' });
    expect(readFileSync(timm.file).subarray(-1000)).toEqual(readFileSync(tv.file).subarray(-1000));
    expect(maxAbsDiff(await engineLogits(timm.file, timm.info, images, manifest.batch, manifest.size), reference(TV))).toBeLessThan(1e-4);

    const lm = await importOnce(LM);
    const tfFile = path.join(dir, 'hub', 'tf_efficientnet_b0.ns_jft_in1k', 'model.safetensors');
    mkdirSync(path.dirname(tfFile), { recursive: true });
    copyFileSync(lm.file, tfFile);
    const tf = await importWeights(tfFile, { weightsDir: path.join(dir, 'weights') });
    expect(tf.info).toMatchObject({ layout: 'timm', padding: 'same', bnEps: 1e-3, bnMomentum: 0.01, name: 'efficientnet-b0-timm-tf-w0.25' });
    expect(tf.info.architectureReason).toBe("timm tf_* weights ('tf_' in the file path): TF SAME padding, BatchNorm eps 1e-3");
    expect(maxAbsDiff(await engineLogits(tf.file, tf.info, images, manifest.batch, manifest.size), reference(LM))).toBeLessThan(1e-4);
  });

  test('an existing import is never overwritten without force', async () => {
    const weightsDir = path.join(dir, 'keep');
    const first = await importWeights(TV, { weightsDir, name: 'mine' });
    const before = readFileSync(first.file);
    const sidecarBefore = readFileSync(first.sidecar, 'utf8');
    const err = await caught(importWeights(LM, { weightsDir, name: 'mine' }));
    expect(err.code).toBe('ERR_WEIGHTS_EXISTS');
    expect(err.message).toBe(
      `${path.join(weightsDir, 'mine.safetensors')} and ${path.join(weightsDir, 'mine.json')} already exist and were left untouched: ` +
        "choose another --name than 'mine', or pass --force to replace them",
    );
    expect(readFileSync(first.file)).toEqual(before);
    expect(readFileSync(first.sidecar, 'utf8')).toBe(sidecarBefore);
    // Only the sidecar left (the user deleted the weights): still refused.
    rmSync(first.file);
    await expect(importWeights(LM, { weightsDir, name: 'mine' })).rejects.toThrow(
      `${path.join(weightsDir, 'mine.json')} already exists and was left untouched: choose another --name than 'mine', or pass --force to replace it`,
    );
    const forced = await importWeights(LM, { weightsDir, name: 'mine', force: true });
    expect(forced.info.layout).toBe('lukemelas');
    expect(JSON.parse(readFileSync(forced.sidecar, 'utf8')).layout).toBe('lukemelas');
  });

  test('weights import CLI prints the summary and the train command', async () => {
    const program = new Command().exitOverride();
    registerWeightsCommand(program);
    const lines: string[] = [];
    const log = jest.spyOn(console, 'log').mockImplementation((line: string) => void lines.push(line));
    try {
      await program.parseAsync(['weights', 'import', LM, '--weights-dir', path.join(dir, 'cli'), '--name', 'lm'], { from: 'user' });
      await program.parseAsync(['weights', 'list', '--weights-dir', path.join(dir, 'cli')], { from: 'user' });
    } finally {
      log.mockRestore();
    }
    expect(lines[0]).toBe(`imported ${LM} (lukemelas layout, legacy torch.save) as efficientnet-b0 x0.25 width: 360 tensors`);
    expect(lines[1]).toBe('architecture: same padding, BatchNorm eps 0.001 / momentum 0.01 (lukemelas weights are TensorFlow ports: TF SAME padding, BatchNorm eps 1e-3)');
    expect(lines).toContain(`fine-tune: melanoma train --pretrained ${path.join(dir, 'cli', 'lm.safetensors')}`);
    expect(lines[lines.length - 1]).toBe('lm');
    expect(statSync(path.join(dir, 'cli', 'lm.safetensors')).size).toBeGreaterThan(1e6);
  });
});

describe('bad files', () => {
  test('truncated zip file', async () => {
    const file = path.join(dir, 'truncated.pth');
    const bytes = readFileSync(TV);
    writeFileSync(file, bytes.subarray(0, bytes.length >> 1));
    const err = await caught(importWeights(file, { weightsDir: path.join(dir, 'bad') }));
    expect(err.code).toBe('ERR_WEIGHTS_FORMAT');
    expect(err.message).toBe(
      `${file} is not a readable torch.save zip archive: it has no end-of-central-directory record (a zip archive ends with one), ` +
        'so it is truncated or damaged; download it again and compare its size or checksum',
    );
  });

  test('truncated legacy file', async () => {
    const file = path.join(dir, 'truncated-legacy.pth');
    const bytes = readFileSync(LM);
    writeFileSync(file, bytes.subarray(0, bytes.length - 100));
    const err = await caught(importWeights(file, { weightsDir: path.join(dir, 'bad') }));
    expect(err.message).toMatch(
      new RegExp(`^${file.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}: storage '\\d+' \\(\\d+ elements from byte \\d+\\) runs past the end of the file \\(${bytes.length - 100} bytes\\): the file is truncated; download it again$`),
    );
  });

  test('a file cut anywhere fails with a format error, never a crash', async () => {
    for (const source of [TV, LM]) {
      const bytes = readFileSync(source);
      const cuts = new Set<number>([0, 1, 2, 3, 8, 9, 30, 100, 1000, 5000]);
      for (let i = 1; i < 150; i++) cuts.add(Math.floor((bytes.length * i) / 150));
      for (const cut of cuts) {
        const piece = bytes.subarray(0, cut);
        const err = await caught(
          // readWeightsFile through a temporary file keeps the path in the message
          (async () => {
            const file = path.join(dir, 'cut.pth');
            writeFileSync(file, piece);
            return readWeightsFile(file);
          })(),
        );
        expect([cut, err.code]).toEqual([cut, 'ERR_WEIGHTS_FORMAT']);
      }
    }
  });

  test('a corrupted byte inside a stored zip entry fails its CRC check', async () => {
    const bytes = Buffer.from(readFileSync(TV));
    const at = bytes.indexOf(Buffer.from('data/0'), 0) + 200; // inside the first storages
    bytes[at] ^= 0xff;
    const file = path.join(dir, 'corrupt.pth');
    writeFileSync(file, bytes);
    const err = await caught(importWeights(file, { weightsDir: path.join(dir, 'bad') }));
    expect(err.message).toMatch(/^.*corrupt\.pth (is not a readable torch\.save zip archive: entry '.+' fails its CRC-32 check: the file is damaged; download it again|: cannot read its pickle: .*)$/);
  });

  test('wrong architecture: weights of one variant asked for as another', async () => {
    const err = await caught(importWeights(TV, { weightsDir: path.join(dir, 'bad'), model: 'efficientnet-b3' }));
    expect(err.code).toBe('ERR_WEIGHTS_MISMATCH');
    expect(err.message).toBe(
      `${TV} holds efficientnet-b0 (width factor 0.25) weights (stem 8 channels, head 320 channels, 16 blocks), not efficientnet-b3: ` +
        'the architecture follows the weights: leave out --model, or import efficientnet-b3 weights instead',
    );
  });

  test('wrong architecture: a tensor of the wrong shape, a missing tensor', async () => {
    const tensors = importedTensors(await importOnce(TV));
    const wrong = tensors.map((t) => (t.name === 'blocks.1.0.conv_pw.weight' ? { ...t, shape: [48, 4, 1, 1], data: Buffer.alloc(48 * 4 * 4) } : t));
    const file = writeSafetensors('wrong-shape/model.safetensors', wrong);
    const err = await caught(importWeights(file, { weightsDir: path.join(dir, 'bad') }));
    expect(err.code).toBe('ERR_WEIGHTS_MISMATCH');
    expect(err.message).toBe(
      `${file} (timm layout; stem 8 channels, head 320 channels, 16 blocks) does not fit any EfficientNet b0-b7; closest is efficientnet-b0 (width factor 0.25): ` +
        'shape mismatches: blocks.1.0.conv_pw.weight (file [48, 4, 1, 1], efficientnet-b0 (width factor 0.25) needs [48, 8, 1, 1]). ' +
        'Check that the file is an EfficientNet state dict from that project and was not modified or truncated',
    );
    const missing = writeSafetensors('missing/model.safetensors', tensors.filter((t) => t.name !== 'blocks.2.1.bn2.running_var'));
    await expect(importWeights(missing, { weightsDir: path.join(dir, 'bad') })).rejects.toThrow('closest is efficientnet-b0 (width factor 0.25): missing keys: blocks.2.1.bn2.running_var.');
  });

  test('a 1000-class head is dropped with a note', async () => {
    const tensors = importedTensors(await importOnce(TV)).filter((t) => !t.name.startsWith('classifier.'));
    tensors.push({ name: 'classifier.weight', dtype: 'F32', shape: [1000, 320], data: Buffer.alloc(1000 * 320 * 4) });
    tensors.push({ name: 'classifier.bias', dtype: 'F32', shape: [1000], data: Buffer.alloc(1000 * 4) });
    const file = writeSafetensors('imagenet-head/model.safetensors', tensors);
    const result = await importWeights(file, { weightsDir: path.join(dir, 'head') });
    expect(result.info.head).toBe('dropped');
    const reason = '1000-class classification head (ImageNet): the melanoma model has one output and starts with a fresh Linear(320, 1)';
    expect(result.info.dropped).toEqual([
      { key: 'classifier.weight', shape: [1000, 320], reason },
      { key: 'classifier.bias', shape: [1000], reason },
    ]);
    expect(result.info.notes).toContain('dropped the 1000-class head classifier.weight [1000, 320] and classifier.bias [1000]: fine-tuning starts with a fresh 1-output head');
    expect(importedTensors(result).some((t) => t.name.startsWith('classifier.'))).toBe(false);
  });

  test('non-float weights are rejected by name', async () => {
    const tensors = importedTensors(await importOnce(TV)).map((t) =>
      t.name === 'conv_stem.weight' ? { ...t, dtype: 'I64' as const, data: Buffer.alloc(t.shape.reduce((a, b) => a * b, 1) * 8) } : t,
    );
    const file = writeSafetensors('int64/model.safetensors', tensors);
    const err = await caught(importWeights(file, { weightsDir: path.join(dir, 'bad') }));
    expect(err.code).toBe('ERR_WEIGHTS_DTYPE');
    expect(err.message).toBe(
      `${file}: tensor 'conv_stem.weight' (the engine's conv_stem.weight) is I64, not floating point: weights must be F32, F16, BF16 or F64. ` +
        'The file holds integer (quantized?) weights; import the float checkpoint instead',
    );
  });

  test('unknown layouts and a --format that does not fit', async () => {
    const file = writeSafetensors('resnet.safetensors', [{ name: 'conv1.weight', dtype: 'F32', shape: [1], data: Buffer.alloc(4) }]);
    await expect(importWeights(file, { weightsDir: path.join(dir, 'bad') })).rejects.toThrow(
      `${file}: its keys are none of the known EfficientNet layouts (lukemelas: '_conv_stem.weight', torchvision: 'features.0.0.weight', timm: 'conv_stem.weight'); ` +
        'its first keys are conv1.weight. Only EfficientNet state dicts from lukemelas/efficientnet_pytorch, torchvision and timm are supported',
    );
    await expect(importWeights(TV, { weightsDir: path.join(dir, 'bad'), format: 'lukemelas' })).rejects.toThrow(
      `${TV} is not in the lukemelas layout (it has no '_conv_stem.weight'); its keys are in the torchvision layout: pass --format torchvision or --format auto`,
    );
  });

  test('a pickle that calls anything else is refused before it could run', () => {
    // Legacy torch.save framing (magic number, protocol 1001, system info) around
    // pickle.dumps(os.system('echo hi'), protocol=2): GLOBAL posix.system, REDUCE.
    const magic = Buffer.from([0x80, 0x02, 0x8a, 0x0a, 0x6c, 0xfc, 0x9c, 0x46, 0xf9, 0x20, 0x6a, 0xa8, 0x50, 0x19, 0x2e]);
    const protocol = Buffer.from([0x80, 0x02, 0x4d, 0xe9, 0x03, 0x2e]);
    const sysInfo = Buffer.from([0x80, 0x02, 0x7d, 0x2e]);
    const evil = Buffer.from('\x80\x02cposix\nsystem\nq\x00X\x07\x00\x00\x00echo hiq\x01\x85q\x02Rq\x03.', 'latin1');
    expect(() => decodeWeights(Buffer.concat([magic, protocol, sysInfo, evil]), 'evil.pth')).toThrow(
      'evil.pth: it pickles an object of posix.system, which a state dict does not contain; this reader loads state dicts only: ' +
        'in Python, `torch.save(torch.load(path).state_dict(), "state_dict.pth")` (or `torch.save(model.state_dict(), ...)`) and import that file',
    );
    // An opcode a state dict never uses (INST, protocol 0).
    expect(() => decodeWeights(Buffer.concat([magic, protocol, sysInfo, Buffer.from('\x80\x02(iposix\nsystem\n.', 'latin1')]), 'inst.pth')).toThrow(
      'inst.pth: cannot read its pickle: opcode 0x69 at byte 28 is not one a torch.save state dict uses (or the file is damaged): ' +
        'load the file in Python and save its state dict with torch.save(model.state_dict(), path)',
    );
  });

  test('a melanoma training checkpoint is pointed to Trainer.load', async () => {
    const file = path.join(dir, 'checkpoint.safetensors');
    const trainer = new Trainer({ model: 'efficientnet-b0', widthFactor: 0.25, stageLimit: 2, device: 'cpu' });
    await trainer.save(file);
    await trainer.dispose();
    await expect(importWeights(file, { weightsDir: path.join(dir, 'bad') })).rejects.toThrow(
      `${file} is a melanoma-native training checkpoint, not pretrained weights: continue it with Trainer.load (its model tensors already have the engine's names)`,
    );
  });

  test('not a weights file at all, a missing file, a bad name', async () => {
    const file = path.join(dir, 'notes.pth');
    writeFileSync(file, 'hello, these are not weights\n');
    await expect(importWeights(file)).rejects.toThrow(
      `${file}: it is neither a torch.save zip archive, a legacy torch.save file nor a safetensors file (it starts with 'hello, these are'); it is only 29 bytes long: truncated? ` +
        'TorchScript archives and ONNX or TensorFlow files are not supported: save the state dict with torch.save(model.state_dict(), path)',
    );
    await expect(importWeights(path.join(dir, 'nope.pth'))).rejects.toThrow(`${path.join(dir, 'nope.pth')} does not exist`);
    await expect(importWeights(TV, { name: '../escape' })).rejects.toThrow(
      `Expected a name of letters, digits, '.', '_' and '-' (no folder, no extension) for the weights but received "../escape"`,
    );
  });
});
