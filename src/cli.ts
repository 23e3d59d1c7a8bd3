#!/usr/bin/env node
/**
 * The `melanoma` command line (npm run train:native = `melanoma train`). A thin layer over the
 * Trainer and friends: parse, validate, print. Usage errors exit 2 with one line that says what
 * and how to fix; internal failures exit 1 with the message, leaving the run folder intact.
 */
import './threadpool'; // first: sizes libuv's pool (sharp's decodes) before anything starts it
import { Command, CommanderError, InvalidArgumentError, Option } from 'commander';
import { readFileSync } from 'fs';
import * as path from 'path';
import { runDataBenchmark } from './bench/data-bench';
import { runDecodeCheck } from './bench/decode-check';
import { runEndToEndBenchmark } from './bench/end-to-end-bench';
import { runPrecisionCheck } from './bench/precision-check';
import { runModelBenchmark, runModelSweep } from './bench/model-bench';
import { registerCalibrateCommand } from './cli/calibrate';
import { registerCompareCommand } from './cli/compare';
import { registerConvertCommand } from './cli/convert';
import { registerEnsembleCommand } from './cli/ensemble';
import { registerEvaluateCommand } from './cli/evaluate';
import { registerInspectCommand } from './cli/inspect';
import { registerWeightsCommand } from './cli/weights';
import { MODEL_NAMES, ModelName } from './model/architectures';
import { OutputExistsError, OutputLocationError } from './files';
import { stoppedExitCode, withStopSignals } from './cli/interrupt';
import { EngineError, NativeLoadError } from './native';
import { TTA_VIEWS, predict } from './predict';
import { embedDataset } from './embed';
import { explainImages } from './explain';
import { SafetensorsError } from './train/safetensors';
import type { Precision, TrainerOptions } from './model/config';
import { crossValidate, formatCvSummary } from './train/cv';
import { DEMO_DATA, epochTableHeader, epochTableRow, resumableFolderOf, resumeRun, trainRun } from './train/run';
import { SCHEDULE_NAMES, parseProgressive } from './train/schedule';
import type { BatchProgress, EpochRecord } from './train/trainer';
import { DECODE_BACKENDS } from './data/types';

const TRAINING_STOP = 'stopping after this batch (or accumulation window) and saving a checkpoint there (a second Ctrl-C or SIGTERM quits at once)...';

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

/** A comma-separated list, each item parsed (and checked) by `item`. */
function list<T>(name: string, item: (value: string) => T) {
  return (value: string): T[] => {
    const items = value.split(',').map((v) => v.trim());
    if (items.some((v) => v === '')) throw new InvalidArgumentError(`expected a comma-separated list for ${name} but received '${value}'`);
    return items.map(item);
  };
}

function choice<T extends string>(name: string, choices: readonly T[]) {
  return (value: string): T => {
    if (!(choices as readonly string[]).includes(value)) throw new InvalidArgumentError(`expected one of ${choices.join(', ')} for ${name} but received '${value}'`);
    return value as T;
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

function decodeOption(description: string): Option {
  return new Option('--decode <backend>', description).choices([...DECODE_BACKENDS]);
}

/** How saved models run when they score (predict, embed): ScoringOptions in src/predict.ts. */
function addScoringOptions(command: Command): Command {
  return command
    .option('--image-size <px>', "input size (default: the checkpoint's last training size)", integer('--image-size', 32))
    .option('--batch-size <n>', 'images per batch', integer('--batch-size', 1))
    .option('--workers <n>', 'JPEG decodes in flight (default: CPU cores)', integer('--workers', 1))
    .addOption(new Option('--device <device>', 'where the engine runs (default: as trained)').choices(['auto', 'cpu', 'cuda']));
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
    .option('--seed <n>', 'random seed (default 42)', integer('--seed', 0))
    .option('--cuda-graph', 'replay the whole training step as a CUDA graph (default on cuda when the engine has them)')
    .option('--no-cuda-graph', 'run the training step eagerly on cuda');
}

/** Training options shared by `train` and `cv`, grouped by concern. */
function addTrainingOptions(command: Command): Command {
  command
    // data
    .option('--data <path>', `folder of trainNN-COUNT.tfrec files, JPEG folder with train.csv, or '${DEMO_DATA}'`, DEMO_DATA)
    .option('--csv <file>', 'CSV with ISIC columns, joined on image_name for TFRecord sets')
    .option('--folds <k>', 'patient-level stratified folds', integer('--folds', 2), 5)
    .option('--workers <n>', 'JPEG decodes in flight (default: CPU cores)', integer('--workers', 1))
    .addOption(decodeOption('where training JPEGs are decoded: sharp (CPU, default) or nvjpeg (GPU; --device cuda, an engine built with nvJPEG); validation uses sharp'))
    // optimisation
    .option('--epochs <n>', 'epochs in all (default 3; demo 4; with --progressive, the stages\' sum)', integer('--epochs', 1))
    .option('--lr <lr>', 'Adam learning rate (default 1e-3)', number('--lr'))
    .addOption(new Option('--schedule <name>', 'learning-rate schedule, per optimizer step (default constant)').choices([...SCHEDULE_NAMES]))
    .option('--warmup-epochs <e>', 'linear warm-up over this many epochs (fractions allowed)', number('--warmup-epochs'))
    .option('--min-lr <lr>', 'floor of the cosine schedule (default 0)', number('--min-lr'))
    .option('--step-epochs <e>', 'step schedule: epochs between cuts (default 1)', number('--step-epochs'))
    .option('--lr-decay <f>', 'step/plateau schedules: factor of each cut (default 0.1)', number('--lr-decay'))
    .option('--plateau-patience <n>', 'plateau schedule: epochs without a better validation AUC before a cut (default 1)', integer('--plateau-patience', 1))
    .option('--early-stopping <n>', 'stop when validation AUC has not improved for n epochs (default 0 = off)', integer('--early-stopping', 0))
    .option('--weight-decay <wd>', 'decoupled weight decay (AdamW); 0 = Adam', number('--weight-decay'))
    .option('--pos-weight <w>', "positive-class loss weight, or 'auto' = negatives/positives of the training fold", (v: string) =>
      v === 'auto' ? v : number('--pos-weight')(v),
    )
    .option('--label-smoothing <e>', 'binary label smoothing', number('--label-smoothing'))
    .option('--accumulate <n>', 'micro-batches per optimizer step', integer('--accumulate', 1))
    .option('--metadata', 'fuse patient metadata (sex, age, anatomic site, images per patient) with the image features')
    .option('--patient-context <width>', "attend over the patient's other images (in its batch when training, all of them when scoring; width of the attention, e.g. 64; default 0 = each image alone)", integer('--patient-context', 0))
    .option('--patient-run-length <n>', 'with --patient-context: the most images of one patient together in a training batch (default: a quarter of the batch, at least 2)', integer('--patient-run-length', 1))
    // transfer learning
    .option('--pretrained <name|file>', 'start from imported ImageNet weights (melanoma weights import): a name in weights/ or a .safetensors path; the model follows the weights, the head starts fresh')
    .option('--freeze-backbone-epochs <n>', 'train only the head for the first n epochs (default 0)', integer('--freeze-backbone-epochs', 0))
    .option('--backbone-lr-factor <f>', "backbone learning rate = the head's x f, e.g. 0.1 (default 1)", number('--backbone-lr-factor'))
    .addOption(
      new Option('--augment <preset>', "train-time augmentation on the device: 'report' = flips, rotations, brightness (the report's); 'strong' adds transpose, shift-scale, colour, cutout").choices(['none', 'report', 'strong']),
    )
    .option('--progressive <stages>', 'progressive resizing: SIZE:EPOCHS stages in order, e.g. 128:2,256:3 (same weights throughout)', (v: string) => {
      try {
        return parseProgressive(v);
      } catch (err) {
        throw new InvalidArgumentError((err as Error).message);
      }
    })
    // output
    .option('--runs-dir <dir>', 'where run folders are created', 'runs')
    .option('--checkpoint-minutes <m>', 'inside an epoch, also save last.safetensors every m minutes, so a killed run loses at most that (default 30; 0 = at epoch ends only)', (v: string) => {
      const parsed = Number(v);
      if (v.trim() === '' || !(parsed >= 0) || !Number.isFinite(parsed)) throw new InvalidArgumentError(`expected a number >= 0 for --checkpoint-minutes but received '${v}'`);
      return parsed;
    })
    .option('--log-every <n>', 'print a progress line every n batches (default: a live bar on a terminal, none otherwise)', integer('--log-every', 1));
  return addModelOptions(command);
}

/** TrainerOptions from parsed `train`/`cv` options (undefined = the default or the demo preset). */
function trainerOptionsFrom(opts: Record<string, unknown>): TrainerOptions {
  return {
    model: opts.model as TrainerOptions['model'],
    imageSize: opts.imageSize as number | undefined,
    batchSize: opts.batchSize as number | undefined,
    epochs: opts.epochs as number | undefined,
    lr: opts.lr as number | undefined,
    schedule: opts.schedule as TrainerOptions['schedule'],
    warmupEpochs: opts.warmupEpochs as number | undefined,
    minLr: opts.minLr as number | undefined,
    stepEpochs: opts.stepEpochs as number | undefined,
    lrDecay: opts.lrDecay as number | undefined,
    plateauPatience: opts.plateauPatience as number | undefined,
    earlyStopping: opts.earlyStopping as number | undefined,
    imageSizes: opts.progressive as TrainerOptions['imageSizes'],
    weightDecay: opts.weightDecay as number | undefined,
    posWeight: opts.posWeight as TrainerOptions['posWeight'],
    labelSmoothing: opts.labelSmoothing as number | undefined,
    accumulate: opts.accumulate as number | undefined,
    workers: opts.workers as number | undefined,
    decode: opts.decode as TrainerOptions['decode'],
    augment: opts.augment as TrainerOptions['augment'],
    device: opts.device as TrainerOptions['device'],
    precision: opts.precision as TrainerOptions['precision'],
    cudaGraph: opts.cudaGraph as boolean | undefined,
    widthFactor: opts.widthFactor as number | undefined,
    headHidden: opts.headHidden as number | undefined,
    metadata: opts.metadata as boolean | undefined,
    patientContext: opts.patientContext as number | undefined,
    patientRunLength: opts.patientRunLength as number | undefined,
    seed: opts.seed as number | undefined,
    pretrained: opts.pretrained as string | undefined,
    freezeBackboneEpochs: opts.freezeBackboneEpochs as number | undefined,
    backboneLrFactor: opts.backboneLrFactor as number | undefined,
  };
}

/** With --resume, options other than --epochs/--workers/--decode/--log-every/--checkpoint-minutes come from the run: say so. */
function rejectWithResume(command: Command, name: string): void {
  const allowed = new Set(['resume', 'epochs', 'workers', 'decode', 'logEvery', 'checkpointMinutes', 'fold']);
  const given = command.options
    .filter((o) => command.getOptionValueSource(o.attributeName()) === 'cli' && !allowed.has(o.attributeName()))
    .map((o) => o.long);
  if (given.length)
    throw new RangeError(`${given.join(', ')} cannot be combined with --resume: a resumed run keeps its own options (only --epochs, --workers, --decode and --checkpoint-minutes may change); start a new \`melanoma ${name}\` to change them`);
}

/** Epoch rows under a header (repeated after other lines), a live bar on a TTY, plain progress lines with --log-every. */
class RowPrinter {
  private headerDue = true;
  private readonly tty = Boolean(process.stdout.isTTY);
  constructor(private readonly logEvery?: number) {}
  log = (line: string) => {
    if (this.tty) process.stdout.write('\r\x1b[2K');
    console.log(line);
    this.headerDue = true;
  };
  onBatch = (p: BatchProgress) => {
    if (this.logEvery) {
      if (p.batch % this.logEvery === 0 || p.batch === p.batches) {
        console.log(`epoch ${p.epoch} batch ${p.batch}/${p.batches} loss ${p.loss.toFixed(4)} ${p.imagesPerSecond.toFixed(1)} img/s`);
        this.headerDue = true; // the next epoch row, below these lines, gets the header again
      }
    } else if (this.tty) process.stdout.write(`\r${progressBar(p)}`);
  };
  onEpoch = (record: EpochRecord) => {
    if (this.tty) process.stdout.write('\r\x1b[2K');
    if (this.headerDue) console.log(epochTableHeader());
    this.headerDue = false;
    console.log(epochTableRow(record));
  };
}

async function runCv(opts: Record<string, unknown>, command: Command): Promise<void> {
  if (opts.resume) rejectWithResume(command, 'cv');
  await withStopSignals(TRAINING_STOP, async (signal) => {
    const printer = new RowPrinter(opts.logEvery as number | undefined);
    const result = await crossValidate({
      resume: opts.resume as string | undefined,
      data: opts.data as string,
      csv: opts.csv as string | undefined,
      folds: opts.folds as number,
      runsDir: opts.runsDir as string,
      ...trainerOptionsFrom(opts),
      signal,
      log: printer.log,
      onBatch: printer.onBatch,
      onEpoch: printer.onEpoch,
      checkpointMinutes: opts.checkpointMinutes as number | undefined,
    });
    if (result.stopped) {
      console.log(`stopped: ${result.folds.length} fold(s) begun; resume with: melanoma cv --resume ${result.cvDir}`);
      return stoppedExitCode(signal);
    }
    for (const line of formatCvSummary(result.summary!)) console.log(line);
    console.log(`done: cross-validation folder ${result.cvDir} (oof_predictions.csv, cv_summary.json, evaluation.json, report.html)`);
    return 0;
  });
}

/** The version in package.json, one folder above both src/ (ts-jest) and dist/ (the built CLI). */
function packageVersion(): string {
  return (JSON.parse(readFileSync(path.join(__dirname, '..', 'package.json'), 'utf8')) as { version: string }).version;
}

function buildProgram(): Command {
  const program = new Command();
  program
    .name('melanoma')
    .description('Train and evaluate EfficientNet melanoma classifiers (LibTorch engine)')
    .version(packageVersion(), '-V, --version', 'print the package version')
    .showHelpAfterError('(run with --help for usage)')
    .exitOverride();

  const train = addTrainingOptions(
    program
      .command('train')
      .description('train one fold (or --fold all) of a SIIM-ISIC dataset (or the built-in demo set) with validation after every epoch')
      .option('--fold <i>', "validation fold, 0-based, or 'all' to cross-validate (as `cv`)", (v: string) => (v === 'all' ? v : integer('--fold', 0)(v)), 0)
      .option('--resume <run>', 'continue this run folder from its last checkpoint (other options come from it; --epochs may extend it)'),
  );
  train.action(async (opts, command: Command) => {
    if (opts.fold === 'all') return runCv(opts, command);
    if (opts.resume) rejectWithResume(command, 'train');
    await withStopSignals(TRAINING_STOP, async (signal) => {
      const printer = new RowPrinter(opts.logEvery);
      const hooks = { signal, log: printer.log, onBatch: printer.onBatch, onEpoch: printer.onEpoch, checkpointMinutes: opts.checkpointMinutes as number | undefined };
      const result = opts.resume
        ? await resumeRun(opts.resume, { epochs: opts.epochs, workers: opts.workers, decode: opts.decode, ...hooks })
        : await trainRun({ data: opts.data, csv: opts.csv, folds: opts.folds, fold: opts.fold, runsDir: opts.runsDir, ...trainerOptionsFrom(opts), ...hooks });
      const best = result.best;
      console.log(
        `${result.stopped ? 'stopped' : 'done'}: ${result.history.length} epoch(s)${result.stopReason && !result.stopped ? ` (${result.stopReason})` : ''}; ` +
          (best ? `best validation AUC ${best.validAuc?.toFixed(4)} at epoch ${best.epoch}; ` : '') +
          `run folder ${result.runDir}`,
      );
      if (result.stopped) {
        console.log(`resume with: melanoma train --resume ${result.runDir}`);
        return stoppedExitCode(signal);
      }
      return 0;
    });
  });

  const cv = addTrainingOptions(
    program
      .command('cv')
      .description('cross-validate: train every fold into one folder, pool the out-of-fold predictions, write the CV summary and report')
      .option('--resume <dir>', 'continue this cross-validation folder (finished folds are kept; --epochs may extend it)'),
  );
  cv.action(async (opts, command: Command) => runCv(opts, command));

  addScoringOptions(program
    .command('predict')
    .description('score a test set with one checkpoint or an ensemble (optionally with TTA) and write submission.csv (image_name,target)')
    .argument('<checkpoints...>', 'checkpoint files, run folders (their best.safetensors) or cv folders (every fold\'s best): several make an ensemble')
    .requiredOption('--data <path>', 'test images: folder of *.tfrec files, JPEG folder (with or without test.csv), or a CSV')
    .option('--csv <file>', 'CSV with ISIC columns, joined on image_name for TFRecord sets')
    .option('--out <file>', 'submission file; an existing file is never overwritten', 'submission.csv')
    .addOption(new Option('--ensemble <mode>', 'combine checkpoints by mean probability or mean normalised rank').choices(['mean', 'rank']).default('mean'))
    .option('--tta <views>', `test-time views averaged per image, 1-8 (${TTA_VIEWS.join(', ')})`, integer('--tta', 1), 1)
    .option('--per-view <file>', 'also write image_name,checkpoint,view,score for every model and view')
    .option('--scores <file>', 'also write the submission scores as a predictions CSV (image_name,patient_id,target,score) for evaluate, compare and calibrate: for a labelled held-out set')
    .option('--calibrator <file>', 'pass the combined probabilities through a calibrator from `melanoma calibrate` (platt, patient-context or patient-embedding)')
    .option('--log-every <n>', 'print a progress line every n batches (default: a live line on a terminal, none otherwise)', integer('--log-every', 1)))
    .action(async (checkpoints: string[], opts) => {
      const live = Boolean(process.stdout.isTTY) && !opts.logEvery;
      let batches = 0;
      const result = await predict({
        checkpoints,
        data: opts.data,
        csv: opts.csv,
        out: opts.out,
        ensemble: opts.ensemble,
        tta: opts.tta,
        perViewCsv: opts.perView,
        scoresCsv: opts.scores,
        calibrator: opts.calibrator,
        imageSize: opts.imageSize,
        batchSize: opts.batchSize,
        workers: opts.workers,
        device: opts.device,
        log: (line) => {
          if (live) process.stdout.write('\r\x1b[2K');
          console.log(line);
        },
        onProgress: (p) => {
          const line = `checkpoint ${p.checkpoint}/${p.checkpoints}: ${p.scored}/${p.images} images, ${p.imagesPerSecond.toFixed(1)} img/s, eta ${p.etaSeconds.toFixed(0)}s`;
          batches++;
          if (opts.logEvery) {
            if (batches % opts.logEvery === 0 || p.scored === p.images) console.log(line);
          } else if (live) process.stdout.write(`\r${line}  `);
        },
      });
      if (live) process.stdout.write('\r\x1b[2K');
      if (result.auc !== null) console.log(`AUC of the combined scores (the test set has targets): ${result.auc.toFixed(4)}`);
      const perView = ` x ${result.views.length} view(s) x ${result.checkpoints.length} checkpoint(s)`;
      for (const file of result.written) console.log(`wrote ${file} (${result.rows.length} images${file === opts.perView ? perView : ''})`);
    });

  addScoringOptions(program
    .command('embed')
    .description("write every image's embedding under one model (embeddings.npy, float32 images x features) and images.csv with scores and each lesion's ugly-duckling distance from the patient's other lesions")
    .argument('<checkpoint>', "one checkpoint file or run folder (its best.safetensors), or a cv folder: out of fold, each fold's model embeds its validation images")
    .requiredOption('--data <path>', 'images: folder of *.tfrec files, JPEG folder (with or without a CSV), or a CSV')
    .option('--csv <file>', 'CSV with ISIC columns, joined on image_name for TFRecord sets')
    .requiredOption('--out <dir>', 'a new folder for embeddings.npy and images.csv (an existing one is refused)'))
    .action(async (checkpoint: string, opts) => {
      const live = Boolean(process.stdout.isTTY);
      const result = await embedDataset({
        checkpoint,
        data: opts.data,
        csv: opts.csv,
        out: opts.out,
        imageSize: opts.imageSize,
        batchSize: opts.batchSize,
        workers: opts.workers,
        device: opts.device,
        log: (line) => console.log(line),
        onProgress: (scored, total) => {
          if (live) process.stdout.write(`\r${scored}/${total} images  `);
        },
      });
      if (live) process.stdout.write('\r\x1b[2K');
      console.log(`wrote ${result.written.join(' and ')} (${result.images} images x ${result.embeddingSize} features)`);
    });

  program
    .command('explain')
    .description('Grad-CAM: for chosen images (or the hardest cases of an evaluation.json), a PNG of each image beside the map of where its melanoma logit came from, and an index.html gallery')
    .argument('<checkpoint>', 'one checkpoint file or run folder (its best.safetensors)')
    .requiredOption('--data <path>', 'images: folder of *.tfrec files, JPEG folder (with or without a CSV), or a CSV')
    .option('--csv <file>', 'CSV with ISIC columns, joined on image_name for TFRecord sets')
    .option('--images <names>', 'image names, comma-separated', (v: string) => v.split(',').map((n) => n.trim()).filter(Boolean))
    .option('--hardest <evaluation.json>', 'explain the hardest cases of this evaluation (missed melanomas, false alarms)')
    .requiredOption('--out <dir>', 'a new folder for the PNGs and index.html (an existing one is refused)')
    .option('--image-size <px>', "input size (default: the checkpoint's last training size)", integer('--image-size', 32))
    .option('--batch-size <n>', 'images per batch (fp32, with the head differentiated)', integer('--batch-size', 1))
    .addOption(new Option('--device <device>', 'where the engine runs (default: as trained)').choices(['auto', 'cpu', 'cuda']))
    .action(async (checkpoint: string, opts, command: Command) => {
      if (Boolean(opts.images) === Boolean(opts.hardest)) command.error('error: pass exactly one of --images NAME,... and --hardest evaluation.json');
      const result = await explainImages({
        checkpoint,
        data: opts.data,
        csv: opts.csv,
        images: opts.images,
        fromEvaluation: opts.hardest,
        out: opts.out,
        imageSize: opts.imageSize,
        batchSize: opts.batchSize,
        device: opts.device,
        log: (line) => console.log(line),
      });
      console.log(`wrote ${result.images.length} PNGs and ${result.index}`);
    });

  addModelOptions(
    program
      .command('bench')
      .description('training iterations/s and images/s on synthetic data (model side, no data loading); prints one JSON line')
      .option('--steps <n>', 'timed steps', integer('--steps', 1), 10)
      .option('--warmup <n>', 'untimed warm-up steps', integer('--warmup', 0), 2)
      .option('--accumulate <n>', 'micro-batches per optimizer step', integer('--accumulate', 1))
      .option('--models <list>', 'sweep: EfficientNet variants, comma-separated (one JSON line per configuration)', list('--models', choice('--models', MODEL_NAMES)))
      .option('--batch-sizes <list>', 'sweep: batch sizes, comma-separated', list('--batch-sizes', integer('--batch-sizes', 1)))
      .option('--precisions <list>', 'sweep: fp32,bf16,fp16', list('--precisions', choice('--precisions', ['fp32', 'bf16', 'fp16'] as const)))
      .option('--graph-modes <list>', "sweep: 'on', 'off' or 'on,off': with and without CUDA graphs", list('--graph-modes', choice('--graph-modes', ['on', 'off'] as const)))
      .option('--end-to-end', 'train from generated 1024x1024-JPEG TFRecords through the real loader; prints img/s, the model-side figure of the same run, their ratio and where the time went')
      .option('--records <n>', 'with --end-to-end: records generated (default 2048)', integer('--records', 1))
      .option('--distinct-images <n>', 'with --end-to-end: distinct JPEGs among them (default 64)', integer('--distinct-images', 1))
      .option('--workers <n>', 'with --end-to-end: JPEG decodes in flight (default: CPU cores)', integer('--workers', 1))
      .addOption(decodeOption('with --end-to-end: decode the JPEGs with sharp (CPU, default) or nvjpeg (GPU)'))
      .option('--precision-check', 'train the same model on fixed batches in each of --precisions (default fp32,bf16,fp16 on cuda) with and without CUDA graphs, and compare each loss curve with fp32 eager (--steps, default 200 here)')
      .option('--decode-check', 'decode JPEGs of each kind (baseline, 4:4:4, progressive, greyscale, non-square, small, damaged) on the GPU with nvJPEG and with sharp, and print how far the pixels differ (--image-size, default 256)')
      .option('--data-only', 'measure the data path instead: TFRecord read + JPEG decode + resize + batch, from generated 1024x1024 JPEGs')
      .option('--sizes <list>', 'with --data-only: training sizes, comma-separated', '256,512'),
  ).action(async (opts, command: Command) => {
    if (opts.dataOnly) {
      const sizes = String(opts.sizes).split(',').map((v: string) => integer('--sizes', 32)(v));
      const result = await runDataBenchmark({ sizes, batchSize: opts.batchSize });
      for (const row of result.rows) {
        console.log(JSON.stringify({ benchmark: 'data', sourceSize: result.sourceSize, meanJpegBytes: Math.round(result.meanJpegBytes), cores: result.cores, ...row }));
      }
      return;
    }
    if (opts.decodeCheck) {
      console.log(JSON.stringify(await runDecodeCheck({ imageSize: opts.imageSize ?? 256, device: opts.device ?? 'cuda' })));
      return;
    }
    if (opts.precisionCheck) {
      const curves = await runPrecisionCheck({
        precisions: opts.precisions as Precision[] | undefined,
        cudaGraphs: opts.graphModes ? (opts.graphModes as string[]).map((m) => m === 'on') : undefined,
        // --steps defaults to 10 for throughput; a loss curve needs its own default.
        steps: command.getOptionValueSource('steps') === 'default' ? 200 : opts.steps,
        model: opts.model,
        imageSize: opts.imageSize ?? 128,
        batchSize: opts.batchSize ?? 32,
        device: opts.device,
        widthFactor: opts.widthFactor,
        headHidden: opts.headHidden,
        seed: opts.seed,
      });
      for (const curve of curves) console.log(JSON.stringify(curve));
      if (curves.some((c) => !c.withinTolerance)) process.exitCode = 1;
      return;
    }
    if (opts.endToEnd) {
      const result = await runEndToEndBenchmark({
        records: opts.records,
        distinctImages: opts.distinctImages,
        steps: opts.steps,
        warmup: opts.warmup,
        model: opts.model,
        imageSize: opts.imageSize,
        batchSize: opts.batchSize,
        device: opts.device,
        precision: opts.precision,
        cudaGraph: opts.cudaGraph,
        widthFactor: opts.widthFactor,
        headHidden: opts.headHidden,
        workers: opts.workers,
        decode: opts.decode,
        seed: opts.seed,
      });
      console.log(JSON.stringify(result));
      return;
    }
    if (opts.models || opts.batchSizes || opts.precisions || opts.graphModes) {
      // A sweep: every combination, one JSON line each as it finishes; a configuration that runs
      // out of memory prints an error line and the sweep goes on.
      const sweep = runModelSweep({
        models: (opts.models as ModelName[] | undefined) ?? [opts.model ?? 'efficientnet-b0'],
        batchSizes: (opts.batchSizes as number[] | undefined) ?? [opts.batchSize ?? 8],
        precisions: (opts.precisions as Precision[] | undefined) ?? [opts.precision && opts.precision !== 'auto' ? opts.precision : 'fp32'],
        cudaGraphs: opts.graphModes ? (opts.graphModes as string[]).map((m) => m === 'on') : opts.cudaGraph === undefined ? 'default' : [opts.cudaGraph as boolean],
        steps: opts.steps,
        warmup: opts.warmup,
        accumulate: opts.accumulate,
        imageSize: opts.imageSize,
        device: opts.device,
        widthFactor: opts.widthFactor,
        headHidden: opts.headHidden,
        seed: opts.seed,
      });
      for await (const row of sweep) console.log(JSON.stringify(row));
      return;
    }
    const result = await runModelBenchmark({
      cudaGraph: opts.cudaGraph,
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
  registerCompareCommand(program);
  registerEnsembleCommand(program);
  registerCalibrateCommand(program);
  registerConvertCommand(program);
  registerInspectCommand(program);
  registerWeightsCommand(program);
  return program;
}

/**
 * The Trainer and library checks name their options as the API spells them ("for lr", "for
 * imageSize"); on the command line the user typed --lr and --image-size, so say those.
 */
export function inFlagNames(message: string, program: Command): string {
  const flags = new Set(program.commands.flatMap((c) => c.options.map((o) => o.long)).filter((f): f is string => Boolean(f)));
  // Options whose flag is not their name spelt with dashes.
  const aliases: Record<string, string> = { imageSizes: '--progressive' };
  return message.replace(/\bfor ([a-z][A-Za-z0-9]*)\b/g, (whole, name: string) => {
    const flag = aliases[name] ?? `--${name.replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`)}`;
    return flags.has(flag) ? `for ${flag}` : whole;
  });
}

export async function main(argv: string[]): Promise<number> {
  const program = buildProgram();
  try {
    await program.parseAsync(argv);
    return 0;
  } catch (err) {
    if (err instanceof InvalidArgumentError) {
      // Thrown by an action's own checks (after parsing): commander has not printed it.
      console.error(`error: ${err.message}`);
      return 2;
    }
    if (err instanceof CommanderError) {
      // commander already printed the message; --help and --version end here too.
      return err.exitCode === 0 ? 0 : 2;
    }
    const usage =
      // Option validation throws TypeError/RangeError with "Expected ..." / "Unknown ..." messages;
      // any other TypeError is a bug of ours and is reported as an internal failure.
      (err instanceof TypeError && /^(Expected|Unknown)/.test(err.message)) ||
      err instanceof RangeError ||
      err instanceof NativeLoadError ||
      err instanceof OutputExistsError ||
      err instanceof OutputLocationError ||
      err instanceof SafetensorsError ||
      (err instanceof EngineError && (err.code === 'ERR_ENGINE_DEVICE' || err.code === 'ERR_ENGINE_STATE'));
    if (usage) {
      console.error(`error: ${inFlagNames(err.message, program)}`);
      return 2;
    }
    const code = (err as { code?: string }).code;
    if (typeof code === 'string' && (code.startsWith('ERR_DATASET') || code.startsWith('ERR_CSV') || code.startsWith('ERR_WEIGHTS'))) {
      console.error(`error: ${(err as Error).message}`);
      return 2;
    }
    console.error(`failed: ${err instanceof Error ? err.message : String(err)}`);
    const stopped = resumableFolderOf(err);
    if (stopped) {
      const command = stopped.kind === 'cv' ? 'cv' : 'train';
      console.error(`${stopped.folder} is kept (last.safetensors holds its newest checkpoint): once the data are fixed, resume with: melanoma ${command} --resume ${stopped.folder}`);
    }
    if (err instanceof TypeError && err.stack) console.error(err.stack);
    return 1;
  }
}

if (require.main === module) {
  main(process.argv).then((code) => {
    // A command may have set its own status (130 after Ctrl-C, 143 after SIGTERM); a failure overrides it.
    if (code !== 0 || process.exitCode === undefined) process.exitCode = code;
  });
}
