#!/usr/bin/env node
/**
 * The `melanoma` command line (npm run train:native = `melanoma train`). A thin layer over the
 * Trainer and friends: parse, validate, print. Usage errors exit 2 with one line that says what
 * and how to fix; internal failures exit 1 with the message, leaving the run folder intact.
 */
import { Command, CommanderError, InvalidArgumentError, Option } from 'commander';
import { runDataBenchmark } from './bench/data-bench';
import { runModelBenchmark } from './bench/model-bench';
import { registerEvaluateCommand } from './cli/evaluate';
import { registerInspectCommand } from './cli/inspect';
import { MODEL_NAMES } from './model/architectures';
import { EngineError, NativeLoadError } from './native';
import { DEMO_DATA, epochTableHeader, epochTableRow, trainRun } from './train/run';
import type { BatchProgress } from './train/trainer';

function integer(name: string, min: number) {
  return (value: string): number => {
    const parsed = Number(value);
    if (!/^-?\d+$/.test(value.trim()) || parsed < min) throw new InvalidArgumentError(`expected an integer >= ${min} for ${name} but received '${value}'`);
    return parsed;
  };
}

function number(name: string) {
  return (value: string): number => {
    const parsed = Number(value);
    if (value.trim() === '' || !Number.isFinite(parsed)) throw new InvalidArgumentError(`expected a number for ${name} but received '${value}'`);
    return parsed;
  };
}

function progressBar(p: BatchProgress): string {
  const width = 30;
  const done = Math.round((p.batch / p.batches) * width);
  const batchesPerSecond = p.imagesPerSecond / Math.max(p.imagesPerBatch, 1);
  const eta = (p.batches - p.batch) / Math.max(batchesPerSecond, 1e-9);
  return (
    `epoch ${p.epoch} [${'#'.repeat(done)}${'.'.repeat(width - done)}] ${p.batch}/${p.batches} ` +
    `loss ${p.loss.toFixed(4)}  ${p.imagesPerSecond.toFixed(1)} img/s  eta ${eta.toFixed(0)}s  `
  );
}

function addModelOptions(command: Command): Command {
  return command
    .addOption(new Option('--model <name>', 'EfficientNet variant').choices([...MODEL_NAMES]))
    .option('--image-size <px>', 'square input size in pixels (default 256; demo 64)', integer('--image-size', 1))
    .option('--batch-size <n>', 'images per micro-batch (default 8; demo 16)', integer('--batch-size', 1))
    .addOption(new Option('--device <device>', 'where the engine runs (default auto: cuda when available)').choices(['auto', 'cpu', 'cuda']))
    .addOption(new Option('--precision <p>', 'numeric precision (default auto: bf16 on cuda, fp32 on cpu)').choices(['auto', 'fp32', 'bf16', 'fp16']))
    .option('--width-factor <x>', 'multiply all channel counts: < 1 for small, fast models (default 1; demo 0.5)', number('--width-factor'))
    .option('--head-hidden <n>', 'hidden dense layer in the head, 0 = Linear(features, 1) as in the report', integer('--head-hidden', 0))
    .option('--seed <n>', 'random seed (default 42)', integer('--seed', 0));
}

function buildProgram(): Command {
  const program = new Command();
  program
    .name('melanoma')
    .description('Train and evaluate EfficientNet melanoma classifiers (LibTorch engine)')
    .showHelpAfterError('(run with --help for usage)')
    .exitOverride();

  const train = program
    .command('train')
    .description('train one fold of a SIIM-ISIC dataset (or the built-in demo set) with validation after every epoch')
    .option('--data <path>', `folder of trainNN-COUNT.tfrec files, JPEG folder with train.csv, or '${DEMO_DATA}'`, DEMO_DATA)
    .option('--csv <file>', 'CSV with ISIC columns, joined on image_name for TFRecord sets')
    .option('--folds <k>', 'patient-level stratified folds', integer('--folds', 2), 5)
    .option('--fold <i>', 'validation fold, 0-based', integer('--fold', 0), 0)
    .option('--epochs <n>', 'epochs (default 3; demo 4)', integer('--epochs', 1))
    .option('--lr <lr>', 'Adam learning rate (default 1e-3)', number('--lr'))
    .option('--weight-decay <wd>', 'decoupled weight decay (AdamW); 0 = Adam', number('--weight-decay'))
    .option('--pos-weight <w>', "positive-class loss weight, or 'auto' = negatives/positives of the training fold", (v: string) =>
      v === 'auto' ? v : number('--pos-weight')(v),
    )
    .option('--label-smoothing <e>', 'binary label smoothing', number('--label-smoothing'))
    .option('--accumulate <n>', 'micro-batches per optimizer step', integer('--accumulate', 1))
    .option('--workers <n>', 'JPEG decodes in flight (default: CPU cores)', integer('--workers', 1))
    .addOption(
      new Option('--augment <preset>', "train-time augmentation on the device: 'report' = flips, rotations, brightness (the report's); 'strong' adds transpose, shift-scale, colour, cutout").choices(['none', 'report', 'strong']),
    )
    .option('--runs-dir <dir>', 'where run folders are created', 'runs');
  addModelOptions(train).action(async (opts) => {
    const controller = new AbortController();
    const onSigint = () => {
      if (controller.signal.aborted) process.exit(130);
      process.stderr.write('\nstopping after this batch (Ctrl-C again to quit at once)...\n');
      controller.abort();
    };
    process.on('SIGINT', onSigint);
    const tty = process.stdout.isTTY;
    let headerPrinted = false;
    try {
      const result = await trainRun({
        data: opts.data,
        csv: opts.csv,
        folds: opts.folds,
        fold: opts.fold,
        runsDir: opts.runsDir,
        signal: controller.signal,
        model: opts.model,
        imageSize: opts.imageSize,
        batchSize: opts.batchSize,
        epochs: opts.epochs,
        lr: opts.lr,
        weightDecay: opts.weightDecay,
        posWeight: opts.posWeight,
        labelSmoothing: opts.labelSmoothing,
        accumulate: opts.accumulate,
        workers: opts.workers,
        augment: opts.augment,
        device: opts.device,
        precision: opts.precision,
        widthFactor: opts.widthFactor,
        headHidden: opts.headHidden,
        seed: opts.seed,
        log: (line) => console.log(line),
        onBatch: (p) => {
          if (!headerPrinted) {
            console.log(epochTableHeader());
            headerPrinted = true;
          }
          if (tty) process.stdout.write(`\r${progressBar(p)}`);
        },
        onEpoch: (record) => {
          if (tty) process.stdout.write('\r\x1b[2K');
          console.log(epochTableRow(record));
        },
      });
      const best = result.best;
      console.log(
        `${result.stopped ? 'stopped' : 'done'}: ${result.history.length} epoch(s); ` +
          (best ? `best validation AUC ${best.validAuc?.toFixed(4)} at epoch ${best.epoch}; ` : '') +
          `run folder ${result.runDir}`,
      );
    } finally {
      process.off('SIGINT', onSigint);
    }
  });

  addModelOptions(
    program
      .command('bench')
      .description('training iterations/s and images/s on synthetic data (model side, no data loading); prints one JSON line')
      .option('--steps <n>', 'timed steps', integer('--steps', 1), 10)
      .option('--warmup <n>', 'untimed warm-up steps', integer('--warmup', 0), 2)
      .option('--accumulate <n>', 'micro-batches per optimizer step', integer('--accumulate', 1))
      .option('--data-only', 'measure the data path instead: TFRecord read + JPEG decode + resize + batch, from generated 1024x1024 JPEGs')
      .option('--sizes <list>', 'with --data-only: training sizes, comma-separated', '256,512'),
  ).action(async (opts) => {
    if (opts.dataOnly) {
      const sizes = String(opts.sizes).split(',').map((v: string) => integer('--sizes', 32)(v));
      const result = await runDataBenchmark({ sizes, batchSize: opts.batchSize });
      for (const row of result.rows) {
        console.log(JSON.stringify({ benchmark: 'data', sourceSize: result.sourceSize, meanJpegBytes: Math.round(result.meanJpegBytes), cores: result.cores, ...row }));
      }
      return;
    }
    const result = await runModelBenchmark({
      steps: opts.steps,
      warmup: opts.warmup,
      accumulate: opts.accumulate,
      model: opts.model,
      imageSize: opts.imageSize,
      batchSize: opts.batchSize,
      device: opts.device,
      precision: opts.precision,
      widthFactor: opts.widthFactor,
      headHidden: opts.headHidden,
      seed: opts.seed,
    });
    console.log(JSON.stringify(result));
  });
  registerEvaluateCommand(program);
  registerInspectCommand(program);
  return program;
}

export async function main(argv: string[]): Promise<number> {
  const program = buildProgram();
  try {
    await program.parseAsync(argv);
    return 0;
  } catch (err) {
    if (err instanceof CommanderError) {
      // commander already printed the message; --help and --version end here too.
      return err.exitCode === 0 ? 0 : 2;
    }
    const usage =
      err instanceof TypeError ||
      err instanceof RangeError ||
      err instanceof NativeLoadError ||
      (err instanceof EngineError && (err.code === 'ERR_ENGINE_DEVICE' || err.code === 'ERR_ENGINE_STATE'));
    if (usage) {
      console.error(`error: ${err.message}`);
      return 2;
    }
    const code = (err as { code?: string }).code;
    if (typeof code === 'string' && (code.startsWith('ERR_DATASET') || code.startsWith('ERR_CSV'))) {
      console.error(`error: ${(err as Error).message}`);
      return 2;
    }
    console.error(`failed: ${err instanceof Error ? err.message : String(err)}`);
    return 1;
  }
}

if (require.main === module) {
  main(process.argv).then((code) => {
    process.exitCode = code;
  });
}
