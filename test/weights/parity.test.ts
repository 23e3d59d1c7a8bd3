/**
 * Numerical parity with PyTorch at full size, where Debian's Python torch is installed
 * (apt-get install -y python3-torch python3-torchvision; they live under /usr/bin/python3).
 * test/weights/parity.py writes, with random weights: torchvision efficientnet_b0 and _b3 (zip;
 * b0 also deflated, in bfloat16, and as a timm-named DataParallel training checkpoint), a
 * lukemelas-layout b0 and b3 with TF SAME padding (legacy format), timm-layout safetensors of both, and
 * the logits PyTorch computes for three 64 px images; every import must reproduce them to
 * 1e-4 in the engine. Without Python torch the suite is skipped with a message.
 */
import { spawnSync } from 'child_process';
import { TORCH_PYTHON, requireTorchOrWarn } from '../python-torch';
import { mkdtempSync, rmSync } from 'fs';
import * as os from 'os';
import * as path from 'path';
import { WeightsError, importWeights } from '../../src/model/weights';
import { engineLogits, maxAbsDiff, readManifest, spread } from './helpers';

const PYTHON = TORCH_PYTHON;
const hasTorch = requireTorchOrWarn('the PyTorch parity tests', '(the committed fixtures in import.test.ts still run)');
const describeTorch = hasTorch ? describe : describe.skip;

describeTorch(`parity with PyTorch (${hasTorch ? PYTHON : `skipped: no torch for ${PYTHON}`})`, () => {
  let dir: string;
  let reference: ReturnType<typeof readManifest>;

  beforeAll(() => {
    dir = mkdtempSync(path.join(os.tmpdir(), 'melanoma-parity-'));
    const run = spawnSync(PYTHON, [path.join(__dirname, 'parity.py'), '--out', path.join(dir, 'ref')], { encoding: 'utf8', timeout: 300_000 });
    if (run.status !== 0) throw new Error(`parity.py failed (${run.status}): ${run.stderr}`);
    reference = readManifest(path.join(dir, 'ref'));
  }, 300_000);
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  const cases = [
    ['torchvision efficientnet_b0', 'torchvision', 'efficientnet-b0', 'symmetric', 1e-5, 'zip'],
    ['torchvision efficientnet_b3', 'torchvision', 'efficientnet-b3', 'symmetric', 1e-5, 'zip'],
    ['lukemelas efficientnet-b0 (legacy format, SAME padding)', 'lukemelas', 'efficientnet-b0', 'same', 1e-3, 'legacy'],
    ['lukemelas efficientnet-b3 (legacy format, SAME padding)', 'lukemelas', 'efficientnet-b3', 'same', 1e-3, 'legacy'],
    ['timm efficientnet_b0 (safetensors)', 'timm', 'efficientnet-b0', 'symmetric', 1e-5, 'safetensors'],
    ['timm tf_efficientnet_b0 (safetensors, SAME padding)', 'timm', 'efficientnet-b0', 'same', 1e-3, 'safetensors'],
    ['torchvision efficientnet_b0 (deflated zip)', 'torchvision', 'efficientnet-b0', 'symmetric', 1e-5, 'zip'],
    ['torchvision efficientnet_b0 (bfloat16)', 'torchvision', 'efficientnet-b0', 'symmetric', 1e-5, 'zip'],
    ['timm training checkpoint of a DataParallel model', 'timm', 'efficientnet-b0', 'symmetric', 1e-5, 'zip'],
    ['torchvision efficientnet_b0 (pickle protocol 4)', 'torchvision', 'efficientnet-b0', 'symmetric', 1e-5, 'zip'],
  ] as const;

  test.each(cases)('%s: detected and reproduced to 1e-4', async (name, layout, model, padding, bnEps, container) => {
    const c = reference.manifest.cases.find((x) => x.name === name);
    if (!c) throw new Error(`parity.py wrote no case '${name}'`);
    const result = await importWeights(path.join(dir, 'ref', c.file), { weightsDir: path.join(dir, 'weights'), name: name.replace(/[^A-Za-z0-9]+/g, '-') });
    expect(result.info).toMatchObject({ layout, model, padding, bnEps, container, widthFactor: 1, head: 'kept', engineChecked: true });
    const { manifest, images } = reference;
    const logits = await engineLogits(result.file, result.info, images, manifest.batch, manifest.size);
    const diff = maxAbsDiff(logits, c.logits);
    console.log(`parity ${name}: max |logit diff| ${diff.toExponential(2)}; logits ${Array.from(logits, (v) => v.toFixed(4)).join(', ')} (PyTorch ${manifest.torch})`);
    expect(diff).toBeLessThan(1e-4);
    expect(spread(c.logits)).toBeGreaterThan(1e-2);
    if (name.includes('bfloat16')) expect(result.info.notes).toContain('converted BF16 weights to F32');
    if (name.includes('checkpoint'))
      expect(result.info.notes.slice(0, 2)).toEqual([
        "the file is a checkpoint: its state dict was taken from ['state_dict']",
        "the 'module.' prefix of a DataParallel model was removed from every key",
      ]);
  });

  test('b3 weights asked for as b0', async () => {
    const file = path.join(dir, 'ref', 'torchvision-efficientnet_b3.pth');
    await expect(importWeights(file, { weightsDir: path.join(dir, 'weights'), model: 'efficientnet-b0' })).rejects.toThrow(
      `${file} holds efficientnet-b3 weights (stem 40 channels, head 1536 channels, 26 blocks), not efficientnet-b0: ` +
        'the architecture follows the weights: leave out --model, or import efficientnet-b0 weights instead',
    );
  });

  test('a torchvision file with its 1000-class ImageNet head: the head is dropped with a note', async () => {
    const result = await importWeights(path.join(dir, 'ref', 'torchvision-b0-imagenet-head.pth'), { weightsDir: path.join(dir, 'weights'), name: 'imagenet' });
    expect(result.info.head).toBe('dropped');
    expect(result.info.dropped.map((d) => d.key)).toEqual(['classifier.1.weight', 'classifier.1.bias']);
    expect(result.info.notes).toContain(
      'dropped the 1000-class head classifier.1.weight [1000, 1280] and classifier.1.bias [1000]: fine-tuning starts with a fresh 1-output head',
    );
  });

  test('an int64 weight saved by torch.save is rejected by name', async () => {
    const file = path.join(dir, 'ref', 'torchvision-b0-int64.pth');
    const err = await importWeights(file, { weightsDir: path.join(dir, 'weights') }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(WeightsError);
    expect((err as WeightsError).message).toBe(
      `${file}: tensor 'features.0.0.weight' (the engine's conv_stem.weight) is I64, not floating point: weights must be F32, F16, BF16 or F64. ` +
        'The file holds integer (quantized?) weights; import the float checkpoint instead',
    );
  });

  test('a whole pickled model is refused without running anything', async () => {
    const file = path.join(dir, 'ref', 'whole-model.pth');
    await expect(importWeights(file, { weightsDir: path.join(dir, 'weights') })).rejects.toThrow(
      `${file}: it pickles an object of torchvision.models.efficientnet.EfficientNet (a whole model saved with torch.save(model)?), which a state dict does not contain; ` +
        'this reader loads state dicts only: in Python, `torch.save(torch.load(path).state_dict(), "state_dict.pth")` (or `torch.save(model.state_dict(), ...)`) and import that file',
    );
  });
});
