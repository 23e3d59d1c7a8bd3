/**
 * Trainer options are validated in TypeScript, before any native work, with messages that name
 * the option, what was expected and what arrived.
 */
import { DEFAULT_OPTIONS, TrainerOptions, engineConfig, resolveOptions } from '../../src/model/config';
import { closestName } from '../../src/options';
import { buildModelSpec } from '../../src/model/architectures';
import { Trainer } from '../../src/train/trainer';

/** The option list unknown-option messages end with (it grows as options are added). */
const OPTION_LIST = [...Object.keys(DEFAULT_OPTIONS), 'channelsLast', 'cudaGraph'].join(', ');

test('the option list names every documented option', () => {
  for (const name of ['model', 'imageSize', 'batchSize', 'lr', 'epochs', 'accumulate', 'device', 'precision', 'seed', 'workers', 'widthFactor', 'stageLimit', 'freezeBatchNorm', 'channelsLast'])
    expect(OPTION_LIST.split(', ')).toContain(name);
});

/** The error `fn` throws, as { type, message } (fails when nothing is thrown). */
function thrown(fn: () => unknown): { type: string; message: string } {
  try {
    fn();
  } catch (err) {
    return { type: (err as Error).constructor.name, message: (err as Error).message };
  }
  throw new Error('expected an exception');
}

const cpuOnly = { cudaAvailable: () => false };

describe('new Trainer(options) rejects bad options with the exact message', () => {
  test.each<[string, unknown, string, string]>([
    ['negative batch size', { batchSize: -1 }, 'RangeError', 'Expected integer between 1 and 4096 for batchSize but received -1 of type number'],
    ['fractional batch size', { batchSize: 2.5 }, 'RangeError', 'Expected integer between 1 and 4096 for batchSize but received 2.5 of type number'],
    ['batch size as a string', { batchSize: '8' }, 'TypeError', "Expected integer between 1 and 4096 for batchSize but received '8' of type string"],
    [
      'misspelled option',
      { batchsize: 8 },
      'TypeError',
      `Unknown option 'batchsize': did you mean 'batchSize'? (options: ${OPTION_LIST})`,
    ],
    ['misspelled option (lr)', { learningRate: 1e-3 }, 'TypeError', `Unknown option 'learningRate' (options: ${OPTION_LIST})`],
    [
      'bf16 on the CPU',
      { device: 'cpu', precision: 'bf16' },
      'RangeError',
      "Expected precision fp32 with device cpu but received 'bf16': mixed precision (bf16/fp16) needs --device cuda",
    ],
    [
      'unknown model',
      { model: 'efficientnet-b9' },
      'RangeError',
      "Expected one of efficientnet-b0, efficientnet-b1, efficientnet-b2, efficientnet-b3, efficientnet-b4, efficientnet-b5, efficientnet-b6, efficientnet-b7 for model but received 'efficientnet-b9' of type string",
    ],
    ['unknown device', { device: 'gpu' }, 'RangeError', "Expected one of auto, cpu, cuda for device but received 'gpu' of type string"],
    ['device of the wrong type', { device: 0 }, 'TypeError', 'Expected one of auto, cpu, cuda for device but received 0 of type number'],
    ['zero learning rate', { lr: 0 }, 'RangeError', 'Expected number in (0, 10] for lr but received 0 of type number'],
    ['NaN learning rate', { lr: NaN }, 'RangeError', 'Expected number in (0, 10] for lr but received NaN of type number'],
    ['image too small', { imageSize: 31 }, 'RangeError', 'Expected integer between 32 and 2048 for imageSize but received 31 of type number'],
    ['posWeight zero', { posWeight: 0 }, 'RangeError', 'Expected number in (0, 1000000] for posWeight but received 0 of type number'],
    ['head dropout 1', { headDropout: 1 }, 'RangeError', 'Expected number in [0, 0.99] for headDropout but received 1 of type number'],
    ['stage limit 8', { stageLimit: 8 }, 'RangeError', 'Expected integer between 1 and 7 for stageLimit but received 8 of type number'],
    ['boolean as number', { freezeBatchNorm: 1 }, 'TypeError', 'Expected boolean for freezeBatchNorm but received 1 of type number'],
    ['channelsLast as string', { channelsLast: 'yes' }, 'TypeError', "Expected boolean for channelsLast but received 'yes' of type string"],
    ['options not an object', null, 'TypeError', 'Expected an options object but received null of type object'],
  ])('%s', (_label, options, type, message) => {
    expect(thrown(() => new Trainer(options as TrainerOptions))).toEqual({ type, message });
  });

  test('the first bad option in a fixed order is reported (unknown names before values)', () => {
    expect(thrown(() => new Trainer({ batchSize: -1, bogus: 1 } as TrainerOptions)).message).toMatch(/^Unknown option 'bogus'/);
  });

  test('undefined means "use the default"', () => {
    const trainer = new Trainer({ batchSize: undefined, device: 'cpu' });
    expect(trainer.options.batchSize).toBe(DEFAULT_OPTIONS.batchSize);
  });
});

describe('resolveOptions', () => {
  test('defaults are the report settings; auto device/precision resolve from the probe', () => {
    const o = resolveOptions({}, cpuOnly);
    expect(o).toMatchObject({ model: 'efficientnet-b0', imageSize: 256, batchSize: 8, lr: 1e-3, device: 'cpu', precision: 'fp32', posWeight: 'auto', channelsLast: false });
    expect(resolveOptions({}, { cudaAvailable: () => true })).toMatchObject({ device: 'cuda', precision: 'bf16', channelsLast: true });
    // Asked for where the engine sees no GPU: refused here, before any data are opened.
    expect(() => resolveOptions({ device: 'cuda' }, cpuOnly)).toThrow(
      new RangeError("Expected 'cpu' or 'auto' for device but received 'cuda': this engine's LibTorch sees no CUDA device (torchInfo().cudaAvailable is false); use --device cpu (a run being resumed keeps its device: resume it where a GPU is seen, or score its checkpoints here with predict --device cpu), or build the engine against a CUDA LibTorch (npm run build:engine with Torch_DIR/CMAKE_PREFIX_PATH set)"),
    );
    let probed = 0;
    resolveOptions({ device: 'cpu' }, { cudaAvailable: () => ++probed > 0 });
    expect(probed).toBe(0); // only 'auto' asks the engine
  });

  test('cudaGraph: on by default only for cuda with an engine that has CUDA graphs; a request that cannot be met is a clear error', () => {
    const cudaWithGraphs = { cudaAvailable: () => true, cudaGraphs: () => true };
    const cudaWithoutGraphs = { cudaAvailable: () => true, cudaGraphs: () => false };
    expect(resolveOptions({}, cudaWithGraphs).cudaGraph).toBe(true);
    expect(resolveOptions({ cudaGraph: false }, cudaWithGraphs).cudaGraph).toBe(false);
    expect(resolveOptions({}, cudaWithoutGraphs).cudaGraph).toBe(false);
    expect(resolveOptions({}, { cudaAvailable: () => true }).cudaGraph).toBe(false); // a probe that does not know: off
    expect(resolveOptions({ device: 'cpu' }, cudaWithGraphs).cudaGraph).toBe(false);
    expect(() => resolveOptions({ device: 'cpu', cudaGraph: true }, cudaWithGraphs)).toThrow(/cudaGraph false with device cpu.*need --device cuda/);
    expect(() => resolveOptions({ device: 'cuda', cudaGraph: true }, cudaWithoutGraphs)).toThrow(/built without CUDA graphs.*--no-cuda-graph/);
    expect(() => resolveOptions({ cudaGraph: 'yes' as unknown as boolean }, cudaWithGraphs)).toThrow(/boolean for cudaGraph/);
    expect(engineConfig(resolveOptions({}, cudaWithGraphs), 1).cudaGraph).toBe(true);
  });

  test("decode: sharp by default; nvjpeg only on cuda with an engine built with nvJPEG, else a clear error", () => {
    const cudaWithNvjpeg = { cudaAvailable: () => true, nvjpeg: () => true };
    const cudaWithoutNvjpeg = { cudaAvailable: () => true, nvjpeg: () => false };
    expect(resolveOptions({}, cudaWithNvjpeg).decode).toBe('sharp');
    expect(engineConfig(resolveOptions({}, cudaWithNvjpeg), 1).nvjpeg).toBe(false);
    const onGpu = resolveOptions({ decode: 'nvjpeg' }, cudaWithNvjpeg);
    expect(onGpu.decode).toBe('nvjpeg');
    expect(engineConfig(onGpu, 1).nvjpeg).toBe(true);
    expect(() => resolveOptions({ decode: 'nvjpeg', device: 'cpu' }, cudaWithNvjpeg)).toThrow(/decode 'sharp' with device cpu.*needs --device cuda/);
    expect(() => resolveOptions({ decode: 'nvjpeg' }, cudaWithoutNvjpeg)).toThrow(/built without nvJPEG/);
    expect(() => resolveOptions({ decode: 'nvjpeg' }, { cudaAvailable: () => true })).toThrow(/built without nvJPEG/); // a probe that does not know: none
    expect(() => resolveOptions({ decode: 'gpu' as never }, cudaWithNvjpeg)).toThrow(/one of sharp, nvjpeg for decode but received 'gpu'/);
  });

  test('closestName suggests within a small edit distance only', () => {
    expect(closestName('imagesize', ['imageSize', 'batchSize'])).toBe('imageSize');
    expect(closestName('epoch', ['epochs', 'lr'])).toBe('epochs');
    expect(closestName('zzzzzz', ['epochs', 'lr'])).toBeUndefined();
  });

  test('engineConfig carries the resolved options and the architecture into the engine config', () => {
    const o = resolveOptions({ device: 'cpu', model: 'efficientnet-b2', widthFactor: 0.5, stageLimit: 4, headHidden: 64, accumulate: 3, freezeBatchNorm: true }, cpuOnly);
    const config = engineConfig(o, 4.5);
    expect(config).toMatchObject({ device: 'cpu', precision: 'fp32', seed: 42, posWeight: 4.5, accumulateSteps: 3, freezeBatchNorm: true, channelsLast: false });
    expect(config.model).toEqual(buildModelSpec('efficientnet-b2', { widthFactor: 0.5, stageLimit: 4, headHidden: 64, headDropout: undefined, dropPathRate: 0.2 }));
    expect(config.model.headDropout).toBe(0.3); // b2's own
    expect(config.model.stages).toHaveLength(4);
  });
});
