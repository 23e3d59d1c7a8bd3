/**
 * The Trainer: epochs, validation, checkpoints and progress events in TypeScript over one native
 * Engine (which owns the tensors). Everything the CLI does goes through this class.
 */
import { createHash } from 'crypto';
import { EventEmitter } from 'events';
import { isDeepStrictEqual } from 'util';
import { DataError } from '../data/errors';
import { Loader, checkSamples, createLoader, engineImages } from '../data/loader';
import { hasPatientWithSeveralImages, patientGroups, withTheirPatients } from '../data/patients';
import { HeadScored, WholePatientHead, concatRows } from './patient-head';
import type { Batch, LesionSample, LoaderStats } from '../data/types';
import { rankedForAuc, rocAucOrNull } from '../metrics/auc';
import { describeValue } from '../metrics/validate';
import { sensitivityPointFromGroups } from '../metrics/operating-points';
import { partialAucFromGroups } from '../metrics/partial-auc';
import { MetadataKind, metadataEncoder, metadataKind, metadataKindMismatch } from '../data/metadata';
import { Engine, EngineError, EngineInfo, EngineState, GradCamRequest, NamedTensor, TrainStepResult, torchInfo } from '../native';
import { DEFAULT_OPTIONS, ENGINE_PROBE, ResolvedOptions, TrainerOptions, describe, engineConfig, expectImageSize, resolveOptions } from '../model/config';
import { loadPretrainedBackbone, pretrainedOptions, resolvePretrained } from '../model/weights/store';
import { writeFileAtomic } from '../files';
import { SafetensorsError, readSafetensorsFile, safetensorsParts } from './safetensors';
import { earlyStopReason, imageSizeForEpoch, learningRateForBatch } from './schedule';

export interface FitData {
  train: readonly LesionSample[];
  /** Scored after every epoch (validation loss and AUC); optional. */
  valid?: readonly LesionSample[];
}

export interface FitOptions {
  /**
   * Stops cleanly after the current batch (with gradient accumulation, after the current
   * window); fit() resolves with the epochs finished so far, and `epochInProgress` says where the
   * stopped epoch is, so that a checkpoint saved then continues from the next batch.
   */
  signal?: AbortSignal;
  /** Awaited after each epoch (and its 'epoch' event), e.g. to write checkpoints. */
  afterEpoch?: (record: EpochRecord, trainer: Trainer) => Promise<void>;
  /**
   * Checkpoints inside long epochs: at each accumulation-window boundary `due()` is asked, and
   * when it says yes the step in flight is finished and `save` is awaited. A checkpoint saved
   * then continues the epoch from the next batch.
   */
  withinEpoch?: { due: () => boolean; save: (trainer: Trainer) => Promise<void> };
}

/** How far an unfinished epoch got: saved in checkpoints, so a resumed run continues it exactly. */
export interface EpochInProgress {
  /** 1-based: the epoch after the completed ones. */
  epoch: number;
  /** Batches of it already trained, of `batchesInEpoch`. */
  batches: number;
  batchesInEpoch: number;
  /** Sums over those batches, for the epoch's mean loss and throughput. */
  lossSum: number;
  images: number;
  trainSeconds: number;
  dataWaitSeconds: number;
  /** The learning rate and optimizer step after the last of them. */
  lr: number;
  step: number;
  /** The seed that ordered the epoch's batches. */
  seed?: number;
  /** trainingSetFingerprint of the set it trained on: the batches already done are of that set. */
  trainSet?: string;
}

/**
 * The training set's identity, in 16 hex digits: its image names and targets, in order. Two sets
 * of the same size give the same number of batches, so only this tells that a checkpoint saved
 * inside an epoch would carry on over other images than the ones its finished batches held.
 */
export function trainingSetFingerprint(train: readonly LesionSample[]): string {
  const hash = createHash('sha256');
  for (const s of train) hash.update(`${s.imageName}\t${s.target}\n`);
  return hash.digest('hex').slice(0, 16);
}

/** One row of the training history: what an epoch did. */
export interface EpochRecord {
  /** 1-based. */
  epoch: number;
  trainLoss: number;
  validLoss: number | null;
  validAuc: number | null;
  /** Why validAuc is null (no validation set, or one class absent). */
  validAucNote: string | null;
  /** Partial AUC above TPR 0.8 (ISIC 2024's metric, range [0, 0.2]); null with validAuc. */
  validPartialAuc: number | null;
  /** Specificity at the threshold that keeps sensitivity >= 0.95 (the clinical operating point). */
  validSpecificityAt95: number | null;
  /** Learning rate of the epoch's last step (schedules change it per optimizer step). */
  lr: number;
  /** Square image size of the epoch (progressive resizing changes it). */
  imageSize: number;
  /** Optimizer steps taken so far. */
  step: number;
  seconds: number;
  trainImagesPerSecond: number;
  /** Time the engine waited for decoded batches (data-bound when large). */
  dataWaitSeconds: number;
  /** Images skipped as undecodable in this epoch (train + valid). */
  skippedImages: number;
}

export interface BatchProgress {
  epoch: number;
  /** 1-based index of the batch in the epoch. */
  batch: number;
  batches: number;
  loss: number;
  step: number;
  imagesPerSecond: number;
  imagesPerBatch: number;
}

export interface Prediction {
  imageName: string;
  patientId: string;
  target: 0 | 1 | null;
  logit: number;
  /** sigmoid(logit): a score; class weighting inflates it, calibrate before reading it as a risk. */
  probability: number;
  /** With `embeddings`: the pooled image features the classifier reads (before metadata). */
  embedding?: Float32Array;
}

/**
 * A checkpoint taken inside an epoch continues only with the batches it was cut from: the same
 * batches per epoch (same data, batch size and sampling) and a whole number of accumulation
 * windows behind it; anything else would train images twice or misalign the windows.
 */
function checkResumable(at: EpochInProgress, batchesPerEpoch: number, o: ResolvedOptions, trainSet: string): void {
  const fix = 'resume with the data and the batchSize/accumulate/seed options it was saved with';
  if (at.trainSet !== undefined && at.trainSet !== trainSet)
    throw new RangeError(
      `This checkpoint stopped after ${at.batches} of ${at.batchesInEpoch} batches of epoch ${at.epoch} of another training set (its images or targets differ: fingerprint ${at.trainSet}, this set's ${trainSet}): ${fix}`,
    );
  if (at.batchesInEpoch !== batchesPerEpoch)
    throw new RangeError(`This checkpoint stopped after ${at.batches} of ${at.batchesInEpoch} batches of epoch ${at.epoch}, but this data and batch size make ${batchesPerEpoch} batches an epoch: ${fix}`);
  if (at.batches % o.accumulate !== 0)
    throw new RangeError(`This checkpoint stopped after ${at.batches} batches of epoch ${at.epoch}, which is not a whole number of windows of accumulate ${o.accumulate}: ${fix}`);
  if (at.seed !== undefined && at.seed !== o.seed)
    throw new RangeError(`This checkpoint stopped inside epoch ${at.epoch} of a run with seed ${at.seed}, whose batch order this seed (${o.seed}) would change: ${fix}`);
}

/** A prediction with its Grad-CAM map and the image as the model saw it. */
export interface GradCamPrediction extends Prediction {
  /** mapHeight x mapWidth, raw (positive pushes towards melanoma). */
  map: Float32Array;
  mapHeight: number;
  mapWidth: number;
  /** uint8 RGB HWC, imageSize x imageSize. */
  image: Buffer;
  imageSize: number;
}

/**
 * A test-time view: returns the transformed uint8 HWC images of a batch (same size and layout),
 * e.g. a flip; see src/predict.ts.
 */
export type ViewTransform = (images: Buffer, batchSize: number, height: number, width: number) => Buffer;

export interface EvaluationResult {
  loss: number | null;
  auc: number | null;
  aucNote: string | null;
  predictions: Prediction[];
}

export interface TrainerEvents {
  batch: [BatchProgress];
  epoch: [EpochRecord];
  checkpoint: [{ path: string; epoch: number }];
  log: [string];
}

const CHECKPOINT_FORMAT = 'melanoma-native/checkpoint@1';
const sigmoid = (x: number) => 1 / (1 + Math.exp(-x));

/**
 * Training needs a target for every image: an unlabelled one would train as a negative whatever
 * posWeight says. Most often the data is a test set (no target column), which is for predict.
 * (@internal: train and cv check the whole set with it before making a run folder.)
 */
export function refuseUnlabelled(train: readonly LesionSample[]): void {
  // Samples made in code (the API) can hold anything; the loss reads a target as given.
  const invalid = train.filter((s) => s.target !== null && s.target !== 0 && s.target !== 1);
  if (invalid.length > 0) {
    const shown = invalid.slice(0, 3).map((s) => `${s.imageName}: ${describeValue(s.target)}`);
    throw new DataError(
      'ERR_DATASET_LABELS',
      `${invalid.length} of ${train.length} training images have a target other than 0 or 1 (${shown.join(', ')}): target is the number 1 for a melanoma and 0 for a benign lesion`,
      { imageName: invalid[0].imageName },
    );
  }
  const unlabelled = train.filter((s) => s.target === null);
  if (unlabelled.length === 0) return;
  throw new DataError(
    'ERR_DATASET_LABELS',
    `${unlabelled.length} of ${train.length} training images have no target (0 or 1), e.g. ${unlabelled
      .slice(0, 3)
      .map((s) => s.imageName)
      .join(', ')}: training needs a label for every image. ` +
      (unlabelled.length === train.length
        ? 'Is this a test set (no target column)? Score it with melanoma predict; train on a set whose CSV or TFRecords carry target.'
        : 'Fill in their target, or remove those rows.'),
    { imageName: unlabelled[0].imageName },
  );
}

/** Options that shape the network: a checkpoint's weights fit only its own. */
const ARCHITECTURE_OPTIONS = ['model', 'widthFactor', 'stageLimit', 'headHidden', 'metadata', 'patientContext', 'padding'] as const;

/** The header fields Trainer.load uses, parsed. */
interface CheckpointHeader {
  options: ResolvedOptions;
  history: EpochRecord[];
  posWeight: number;
  epochsDone: number;
  step: number;
  backboneStep: number;
  lossScale: number;
  /** trainingSetFingerprint of the set it last trained on; null in checkpoints from before it was recorded, or untrained. */
  trainSet: string | null;
}

/**
 * Reads the header fields Trainer.load uses, each checked as it is parsed: a file edited by hand
 * (or written by something else under our format name) is named with the field, instead of
 * loading with a NaN step or failing with a bare JSON error.
 */
function readCheckpointHeader(file: string, metadata: Record<string, string>): CheckpointHeader {
  // Values are strings as Trainer.save writes them; a hand-edited header may hold anything.
  const shown = (value: unknown) => (value === undefined ? 'missing' : `'${(typeof value === 'string' ? value : JSON.stringify(value)).slice(0, 80)}'${typeof value === 'string' ? '' : ` (a ${typeof value}, not a string)`}`);
  const damaged = (key: string, expected: string) =>
    new SafetensorsError(`${file} has a damaged checkpoint header: '${key}' should be ${expected} but is ${shown(metadata[key])}; checkpoints are written by Trainer.save (was the file edited?)`);
  const json = (key: string, isValid: (v: unknown) => boolean, expected: string): unknown => {
    let value: unknown;
    try {
      if (typeof metadata[key] !== 'string') throw new TypeError('not a string');
      value = JSON.parse(metadata[key]);
    } catch {
      throw damaged(key, expected);
    }
    if (!isValid(value)) throw damaged(key, expected);
    return value;
  };
  const number = (key: string, isValid: (v: number) => boolean, expected: string): number => {
    const value = typeof metadata[key] === 'string' && metadata[key].trim() !== '' ? Number(metadata[key]) : NaN;
    if (!isValid(value)) throw damaged(key, expected);
    return value;
  };
  const count = (v: number) => Number.isInteger(v) && v >= 0;
  const options = json('melanoma.options', (v) => typeof v === 'object' && v !== null && !Array.isArray(v), 'a JSON object of options') as ResolvedOptions;
  const history = metadata['melanoma.history'] === undefined ? [] : (json('melanoma.history', Array.isArray, 'a JSON array of epochs') as EpochRecord[]);
  const posWeight = number('melanoma.pos_weight', (v) => Number.isFinite(v) && v > 0, 'a positive number');
  const epochsDone = number('melanoma.epochs_done', count, 'a whole number of epochs');
  const step = number('melanoma.step', count, 'a whole number of steps');
  // Absent in checkpoints from before the backbone had its own step count.
  const backboneStep = metadata['melanoma.backbone_step'] === undefined ? step : number('melanoma.backbone_step', count, 'a whole number of steps');
  const lossScale = number('melanoma.loss_scale', (v) => Number.isFinite(v) && v > 0, 'a positive number');
  const trainSet = metadata['melanoma.train_set'] ?? null;
  if (trainSet !== null && !/^[0-9a-f]{16}$/.test(trainSet)) throw damaged('melanoma.train_set', 'a training-set fingerprint (16 hex digits)');
  return { options, history, posWeight, epochsDone, step, backboneStep, lossScale, trainSet };
}

/** What predict, evaluate and gradCam are given, checked as the constructor checks options. */
function checkScoringInput(samples: unknown, imageSize: unknown): void {
  if (!Array.isArray(samples)) throw new TypeError(`Expected an array of samples (LesionSample[], e.g. openDataset(...).samples) but received ${describe(samples)}`);
  checkSamples(samples, 'images to score');
  if (imageSize !== undefined) expectImageSize('imageSize', imageSize);
}

/** Negatives / positives of the training set, the report's class weight (55.49 on ISIC 2020). */
export function balancedPosWeight(samples: readonly LesionSample[]): number {
  const positives = samples.filter((s) => s.target === 1).length;
  const negatives = samples.filter((s) => s.target === 0).length;
  if (positives === 0 || negatives === 0)
    throw new RangeError(
      `Expected both classes in the training set to weight the loss but found ${positives} positive and ${negatives} negative samples: ` +
        'check the labels, or set posWeight explicitly',
    );
  return negatives / positives;
}

/** pAUC (TPR >= 0.8) and specificity at 95% sensitivity of a validation result, when its AUC is defined. */
function clinicalFigures(validation: EvaluationResult | null): Pick<EpochRecord, 'validPartialAuc' | 'validSpecificityAt95'> {
  if (!validation || validation.auc === null) return { validPartialAuc: null, validSpecificityAt95: null };
  const groups = rankedForAuc(
    validation.predictions.map((p) => p.target as number),
    validation.predictions.map((p) => p.logit),
  );
  return { validPartialAuc: partialAucFromGroups(groups, 0.8), validSpecificityAt95: sensitivityPointFromGroups(groups, 0.95).specificity };
}

/**
 * Results of a scoring loader's epoch 0 in the order of the samples it was given (a loader that
 * groups patients scores them in another order); every sample has its result, as scoring loaders
 * never skip an image.
 */
function inSampleOrder<T>(loader: Loader, inLoaderOrder: readonly T[]): T[] {
  const order = loader.epochOrder(0);
  if (order.length !== inLoaderOrder.length) throw new Error(`internal: ${inLoaderOrder.length} results for ${order.length} samples`);
  const out = new Array<T>(order.length);
  order.forEach((sampleIndex, position) => (out[sampleIndex] = inLoaderOrder[position]));
  return out;
}

/**
 * Scores must be numbers: a model whose weights overflow (trained with too high a learning rate)
 * gives NaN or infinite logits, which no metric, calibrator or submission can use.
 */
function refuseNonFiniteScores(scored: readonly { imageName: string; logit: number }[]): void {
  const bad = scored.filter((p) => !Number.isFinite(p.logit));
  if (bad.length === 0) return;
  throw new EngineError(
    `the model gives a non-finite score (${bad[0].logit}) for ${bad.length} of ${scored.length} images (e.g. ${bad[0].imageName}): its weights or BatchNorm statistics overflow, as after training with too high a learning rate. ` +
      'Score a checkpoint from before it diverged, or train again with a lower --lr',
    'ERR_ENGINE_NONFINITE',
  );
}

/** The refusal of a Trainer used after dispose(); `when` says it happened during a call. */
function trainerDisposed(when?: string): EngineError {
  const what = when ? `this Trainer was disposed ${when}, and its model with it` : 'this Trainer was disposed, and its model with it';
  return new EngineError(`${what}: create a new Trainer, or Trainer.load a checkpoint saved before dispose()`, 'ERR_ENGINE_DISPOSED');
}

export class Trainer extends EventEmitter<TrainerEvents> {
  readonly options: ResolvedOptions;
  private engine: Engine | null = null;
  /** Engine builds run one after another, so calls that overlap (prepare with predict) share one engine. */
  private engineBuilds: Promise<unknown> = Promise.resolve();
  /** Set by dispose(): the model is gone, and nothing may quietly build an untrained one. */
  private disposed = false;
  /** A fit() is running: a second one would train the same model twice over. */
  private fitting = false;
  /** fit() is paused in one of its hooks (afterEpoch, withinEpoch.save), where the state is exactly what a checkpoint records. */
  private atSavePoint = false;
  /** Calls using each engine now (withEngine): an engine replaced meanwhile is freed after the last. */
  private readonly engineUsers = new Map<Engine, number>();
  /** Placeholder engines replaced while a call still scored with them, freed when it ends. */
  private readonly retiredEngines = new Set<Engine>();
  private posWeight: number | null = null;
  /** posWeight 'auto' was set to 1 because the engine was built before any training set was seen. */
  private posWeightIsPlaceholder = false;
  private epochsDone = 0;
  /** The unfinished epoch fit() stopped in (or a checkpoint was saved in), if any. */
  private inProgress: EpochInProgress | null = null;
  /** How the training samples spelled sex and site (with `metadata`): scored samples must match. */
  private trainedMetadataKind: MetadataKind | null = null;
  /** trainingSetFingerprint of the set fit() last trained on (also after Trainer.load), or null. */
  private trainedOn: string | null = null;
  private readonly history: EpochRecord[] = [];
  private lastValidation: EvaluationResult | null = null;
  private stopReasonText: string | null = null;

  /**
   * Validates the options at once: a bad option throws here, before any work.
   * @param stored - internal: options a run stored earlier (Trainer.load, a cv resume), read with the meaning they had (see resolveOptions)
   */
  constructor(options: TrainerOptions = {}, { stored = false }: { stored?: boolean } = {}) {
    super();
    const resolved = resolveOptions(options, ENGINE_PROBE, { stored });
    // Pretrained weights fix the architecture: model, width, padding, BatchNorm eps and momentum.
    this.options = resolved.pretrained ? pretrainedOptions(resolved, options, resolvePretrained(resolved.pretrained)) : resolved;
  }

  /** Epochs completed (also after Trainer.load). */
  get completedEpochs(): number {
    return this.epochsDone;
  }

  /** Where the unfinished epoch stands after an abort or a checkpoint inside it, else null. */
  get epochInProgress(): Readonly<EpochInProgress> | null {
    return this.inProgress;
  }

  /** The epochs trained so far, restored by Trainer.load. */
  get epochHistory(): readonly EpochRecord[] {
    return this.history;
  }

  /** The validation result of the last epoch fit() finished (its predictions, loss and AUC). */
  get lastValidationResult(): EvaluationResult | null {
    return this.lastValidation;
  }

  /** Why the last fit() ended before `epochs`: early stopping, an abort, or null. */
  get stopReason(): string | null {
    return this.stopReasonText;
  }

  /** The image size training uses at epoch `epoch` (1-based; progressive resizing changes it). */
  imageSizeAt(epoch: number): number {
    return imageSizeForEpoch(this.options.imageSize, this.options.imageSizes, Math.max(epoch, 1));
  }

  /**
   * The fingerprint (trainingSetFingerprint) of the training set the model last trained on, kept
   * in its checkpoints: a run folder's resume checks it against the folder's own fold. Null
   * before training, and after loading a checkpoint from before it was recorded.
   */
  get trainingSet(): string | null {
    return this.trainedOn;
  }

  /** The class weight in use (null before the engine exists). */
  get positiveWeight(): number | null {
    return this.posWeight;
  }

  /**
   * Builds the model now (fit() does it when needed). With posWeight 'auto' the class weight
   * comes from `train`; without a training set it is 1.
   */
  async prepare(train?: readonly LesionSample[]): Promise<EngineInfo> {
    return (await this.ensureEngine(train)).info();
  }

  /**
   * The engine, built if needed. With `asUser` the caller is counted as one of its users in the
   * same step, before a build queued behind this one (fit's rebuild of the placeholder) can run.
   */
  private ensureEngine(train?: readonly LesionSample[], { asUser = false } = {}): Promise<Engine> {
    const build = this.engineBuilds
      .catch(() => undefined)
      .then(async () => {
        const engine = await this.buildEngineIfNeeded(train);
        if (asUser) this.engineUsers.set(engine, (this.engineUsers.get(engine) ?? 0) + 1);
        return engine;
      });
    this.engineBuilds = build;
    return build;
  }

  /** Runs a fit hook with save() allowed: the state there is exactly what a checkpoint records. */
  private async atCheckpointPoint<T>(hook: () => Promise<T> | T): Promise<T> {
    this.atSavePoint = true;
    try {
      return await hook();
    } finally {
      this.atSavePoint = false;
    }
  }

  /**
   * Runs `use`, the body of the method `call`, on the engine (built if needed, as ensureEngine),
   * counted as one of its users so that a rebuild of the placeholder engine leaves it to calls
   * still scoring with it.
   */
  private async withEngine<T>(call: string, train: readonly LesionSample[] | undefined, use: (engine: Engine) => Promise<T>): Promise<T> {
    const engine = await this.ensureEngine(train, { asUser: true });
    try {
      return await use(engine);
    } catch (err) {
      // dispose() freed the engine under this call: say so in the Trainer's words, not the engine's.
      if (this.disposed && err instanceof EngineError && err.code === 'ERR_ENGINE_DISPOSED') throw trainerDisposed(`during ${call}`);
      throw err;
    } finally {
      const users = (this.engineUsers.get(engine) ?? 1) - 1;
      if (users > 0) this.engineUsers.set(engine, users);
      else {
        this.engineUsers.delete(engine);
        if (this.retiredEngines.delete(engine)) await engine.dispose();
      }
    }
  }

  private async buildEngineIfNeeded(train?: readonly LesionSample[]): Promise<Engine> {
    if (this.disposed) throw trainerDisposed();
    if (this.engine && train && this.posWeightIsPlaceholder) {
      // Built earlier (evaluate/predict/save) with the placeholder weight 1 of posWeight 'auto':
      // nothing was trained yet, so rebuild it (same seed, same weights) with the training set's.
      // A predict still scoring with the placeholder finishes on it; it is freed after that.
      const placeholder = this.engine;
      this.engine = null;
      this.posWeight = null;
      if (this.engineUsers.has(placeholder)) this.retiredEngines.add(placeholder);
      else await placeholder.dispose();
    }
    if (this.engine) return this.engine;
    if (this.posWeight === null) {
      this.posWeightIsPlaceholder = this.options.posWeight === 'auto' && !train;
      if (this.options.posWeight !== 'auto') this.posWeight = this.options.posWeight;
      else if (train) this.posWeight = balancedPosWeight(train);
      else this.posWeight = 1;
    }
    const engine = await Engine.create(engineConfig(this.options, this.posWeight));
    if (this.options.pretrained) {
      // The backbone from the imported weights; the head keeps its fresh initialisation.
      const { loaded } = await loadPretrainedBackbone(engine, this.options.pretrained).catch(async (err) => {
        await engine.dispose();
        throw err;
      });
      this.emit('log', `pretrained: ${loaded} backbone tensors from ${this.options.pretrained}; the classification head starts fresh`);
    }
    this.engine = engine;
    return this.engine;
  }

  /**
   * The samples, every one of them (no shuffle, no dropped remainder), for scoring: in their order,
   * or with patient context in patients' order (inSampleOrder puts the results back).
   */
  private scoringLoader(samples: readonly LesionSample[], imageSize: number) {
    const o = this.options;
    return createLoader([...samples], {
      batchSize: o.batchSize,
      imageSize,
      shuffle: false,
      seed: o.seed,
      dropLast: false,
      prefetchBatches: o.prefetch,
      decodeConcurrency: o.workers,
      groupPatients: o.patientContext > 0,
    });
  }

  /**
   * A batch as the engine takes it; `metadata` encodes its samples when the model fuses metadata,
   * and a model with patient context learns which images share a patient.
   */
  private batchRequest(batch: Batch, metadata: ((samples: readonly LesionSample[]) => Float32Array) | null) {
    return {
      ...engineImages(batch),
      batchSize: batch.batchSize,
      height: batch.height,
      width: batch.width,
      ...(metadata ? { metadata: metadata(batch.samples) } : {}),
      ...(this.options.patientContext > 0 ? { groups: patientGroups(batch.samples) } : {}),
    };
  }

  /**
   * The metadata encoder of a sample set (images per patient counted in it), or null without
   * metadata. Refuses samples spelled otherwise than the ones the model learned from.
   */
  private metadataFor(samples: readonly LesionSample[], { training = false } = {}) {
    if (!this.options.metadata) return null;
    const kind = metadataKind(samples);
    if (training && (this.trainedMetadataKind === null || this.trainedMetadataKind === 'none')) this.trainedMetadataKind = kind;
    const mismatch = metadataKindMismatch(this.trainedMetadataKind ?? 'none', kind);
    if (mismatch) throw new RangeError(`Expected samples whose metadata is spelled as in training but received others: ${mismatch}`);
    return metadataEncoder(samples);
  }

  /**
   * For a model with patient context: a note when no patient of `samples` has more than one image
   * (no patient_id, or one image each), so that each image is `verb` (trained, scored) alone, as
   * without the context. Null otherwise.
   */
  patientContextNote(samples: readonly LesionSample[], verb: string): string | null {
    if (this.options.patientContext === 0 || hasPatientWithSeveralImages(samples)) return null;
    return `patient context: no patient of these ${samples.length} images has more than one of them (by patient_id), so each image is ${verb} alone, without context`;
  }

  /**
   * Trains for `options.epochs` epochs in all (a loaded checkpoint continues where it stopped),
   * validating after each. Resolves with the whole history.
   */
  async fit(data: FitData, { signal, afterEpoch, withinEpoch }: FitOptions = {}): Promise<EpochRecord[]> {
    if (!data || !Array.isArray(data.train)) throw new TypeError(`Expected fit({ train: LesionSample[] }) but received ${typeof data?.train}`);
    if (data.train.length === 0) throw new RangeError('Expected a non-empty training set but received 0 samples');
    checkSamples(data.train, 'training images');
    if (data.valid !== undefined && data.valid !== null) {
      if (!Array.isArray(data.valid)) throw new TypeError(`Expected fit({ valid: LesionSample[] }) but received ${describe(data.valid)}`);
      checkSamples(data.valid, 'validation images');
    }
    refuseUnlabelled(data.train);
    if (this.fitting) throw new EngineError('fit() is already running on this Trainer: await it before calling fit() again', 'ERR_ENGINE_STATE');
    this.fitting = true;
    try {
      return await this.withEngine('fit()', data.train, (engine) => this.fitOnce(engine, data, { signal, afterEpoch, withinEpoch }));
    } finally {
      this.fitting = false;
    }
  }

  private async fitOnce(engine: Engine, data: FitData, { signal, afterEpoch, withinEpoch }: FitOptions): Promise<EpochRecord[]> {
    const o = this.options;
    this.stopReasonText = null;
    // epochs counts all epochs, also those before a Trainer.load: a fit with none left says so.
    if (this.epochsDone >= o.epochs)
      this.emit('log', `no epoch left to train: ${this.epochsDone} are done and epochs is ${o.epochs} (it counts them all; a larger epochs, or train --resume RUN --epochs N, trains further)`);
    // One loader per image size (progressive resizing); the epoch order depends on the seed and epoch only.
    const trainMetadata = this.metadataFor(data.train, { training: true });
    const trainSet = trainingSetFingerprint(data.train);
    this.trainedOn = trainSet;
    const contextNote = this.patientContextNote(data.train, 'trained');
    if (contextNote) this.emit('log', contextNote);
    const loaders = new Map<number, ReturnType<typeof createLoader>>();
    const loaderFor = (imageSize: number) => {
      const existing = loaders.get(imageSize);
      if (existing) return existing;
      const created = createLoader([...data.train], {
        batchSize: o.batchSize,
        imageSize,
        shuffle: true,
        seed: o.seed,
        // A last batch of one image breaks BatchNorm statistics; drop the remainder when we can.
        dropLast: data.train.length > o.batchSize,
        prefetchBatches: o.prefetch,
        decodeConcurrency: o.workers,
        // Train steps only: scoring keeps sharp (its test-time views flip host pixels).
        decode: o.decode,
        groupPatients: o.patientContext > 0,
        ...(o.patientRunLength > 0 ? { patientRunLength: o.patientRunLength } : {}),
      });
      loaders.set(imageSize, created);
      return created;
    };
    while (this.epochsDone < o.epochs) {
      if (signal?.aborted) {
        this.stopReasonText = 'aborted';
        break;
      }
      const early = earlyStopReason(this.history, o.earlyStopping);
      if (early) {
        this.stopReasonText = early;
        this.emit('log', early);
        break;
      }
      const epoch = this.epochsDone + 1;
      const imageSize = this.imageSizeAt(epoch);
      const loader = loaderFor(imageSize);
      // A checkpoint saved inside this epoch: carry on from its next batch with its sums.
      const resumed = this.inProgress?.epoch === epoch ? this.inProgress : null;
      if (resumed) checkResumable(resumed, loader.batchesPerEpoch, o, trainSet);
      let lr = resumed?.lr ?? o.lr;
      const started = performance.now();
      let lossSum = resumed?.lossSum ?? 0;
      let images = resumed?.images ?? 0;
      let batchIndex = resumed?.batches ?? 0;
      let step = resumed?.step ?? 0;
      let aborted = false;
      const imagesBefore = images;
      const firstBatch = batchIndex;
      const progress = (): EpochInProgress => ({
        epoch,
        batches: batchIndex,
        batchesInEpoch: loader.batchesPerEpoch,
        lossSum,
        images,
        trainSeconds: (resumed?.trainSeconds ?? 0) + (performance.now() - started) / 1000,
        dataWaitSeconds: (resumed?.dataWaitSeconds ?? 0) + loader.stats().waitSeconds,
        lr,
        step,
        seed: o.seed,
        trainSet,
      });
      const account = (result: TrainStepResult, batchSize: number) => {
        lossSum += result.loss * batchSize;
        images += batchSize;
        step = result.step;
        this.emit('batch', {
          epoch,
          batch: ++batchIndex,
          batches: loader.batchesPerEpoch,
          loss: result.loss,
          step,
          imagesPerSecond: (images - imagesBefore) / ((performance.now() - started) / 1000),
          imagesPerBatch: batchSize,
        });
      };
      // One step stays in flight: step i+1 is submitted before step i's result is awaited, so on
      // CUDA the engine queues it on the device while it reads step i back, and the device never
      // waits for the host between steps. (On CPU a step completes when it is queued: same
      // results either way.) A step is never left running when fit returns or throws.
      let inFlight: { result: Promise<TrainStepResult>; batchSize: number } | null = null;
      let submitted = batchIndex;
      // Accumulation windows restart every epoch, so a boundary is a multiple of `accumulate`.
      const atWindowBoundary = () => submitted % o.accumulate === 0;
      try {
        for await (const batch of loader.epoch(this.epochsDone, { fromBatch: firstBatch })) {
          if (withinEpoch && submitted > firstBatch && atWindowBoundary() && withinEpoch.due()) {
            // Nothing in flight and no pending gradients: the engine state is exactly `progress()`.
            const previous = inFlight;
            inFlight = null;
            if (previous) account(await previous.result, previous.batchSize);
            this.inProgress = progress();
            await this.atCheckpointPoint(() => withinEpoch.save(this));
            this.inProgress = null; // training moves on from that point
          }
          lr = learningRateForBatch(o, this.epochsDone, submitted++, loader.batchesPerEpoch, this.history);
          const next = {
            result: engine.trainStep({
              ...this.batchRequest(batch, trainMetadata),
              labels: batch.labels,
              lr,
              backboneLr: lr * o.backboneLrFactor,
              freezeBackbone: this.epochsDone < o.freezeBackboneEpochs,
            }),
            batchSize: batch.batchSize,
          };
          // It is awaited later (after the next batch arrives): mark it handled meanwhile.
          next.result.catch(() => undefined);
          const previous = inFlight;
          inFlight = next;
          if (previous) account(await previous.result, previous.batchSize);
          // With accumulation, stop at the end of the window so no gradients are left pending; with
          // no batch left, finish the epoch instead (it then stops before the next one).
          if (signal?.aborted && atWindowBoundary() && submitted < loader.batchesPerEpoch) {
            aborted = true;
            break;
          }
        }
        const last = inFlight;
        inFlight = null;
        if (last) account(await last.result, last.batchSize);
      } finally {
        // After a failure: the step behind the failed one settles (rejected or not) before fit ends.
        if (inFlight) await inFlight.result.catch(() => undefined);
      }
      if (!aborted && o.accumulate > 1) {
        // The epoch's last, unfinished accumulation window is applied now: a checkpoint written
        // after the epoch then holds no pending gradients, and a resumed run steps identically.
        step = (await engine.flushAccumulation({ lr, backboneLr: lr * o.backboneLrFactor })).step;
      }
      if (aborted) {
        this.inProgress = progress();
        this.stopReasonText = `aborted during epoch ${epoch} after ${batchIndex} of ${loader.batchesPerEpoch} batches`;
        this.emit('log', `stopped during epoch ${epoch} after ${batchIndex} of ${loader.batchesPerEpoch} batches; a checkpoint saved now continues from batch ${batchIndex + 1}`);
        break;
      }
      const { trainSeconds, dataWaitSeconds } = progress();
      this.inProgress = null;
      const trainStats: LoaderStats = loader.stats();
      // On the engine this fit holds (the samples were checked when fit began).
      const validation = data.valid && data.valid.length > 0 ? (await this.scoreViews(engine, data.valid, [null], { imageSize }))[0] : null;
      const record: EpochRecord = {
        epoch,
        trainLoss: lossSum / Math.max(images, 1),
        validLoss: validation?.loss ?? null,
        validAuc: validation?.auc ?? null,
        validAucNote: validation ? validation.aucNote : 'no validation set',
        ...clinicalFigures(validation),
        lr,
        imageSize,
        step,
        seconds: (resumed?.trainSeconds ?? 0) + (performance.now() - started) / 1000,
        trainImagesPerSecond: images / trainSeconds,
        dataWaitSeconds,
        skippedImages: trainStats.skipped.length,
      };
      this.epochsDone = epoch;
      this.lastValidation = validation;
      this.history.push(record);
      this.emit('epoch', record);
      if (afterEpoch) await this.atCheckpointPoint(() => afterEpoch(record, this));
    }
    return [...this.history];
  }

  /**
   * Scores samples in order (eval mode), with image_name/patient_id carried along. With
   * `metadata`, each patient's image count is taken from `samples`: score a whole set at once.
   */
  async predict(samples: readonly LesionSample[], options: { imageSize?: number } = {}): Promise<Prediction[]> {
    return (await this.evaluate(samples, options)).predictions;
  }

  /**
   * Grad-CAM of each sample's melanoma logit (see GradCamResult in src/native.ts), with the
   * image as the model saw it (uint8 HWC at `imageSize`), in order. Training state is untouched;
   * it works with a frozen backbone.
   */
  async gradCam(
    samples: readonly LesionSample[],
    { imageSize, population }: { imageSize?: number; /** The set the samples belong to: its images per patient are counted (metadata), and its other images of their patients give the context (patient context). Default `samples`. */ population?: readonly LesionSample[] } = {},
  ): Promise<GradCamPrediction[]> {
    checkScoringInput(samples, imageSize);
    return this.withEngine('gradCam()', undefined, (engine) => this.gradCamOn(engine, samples, { imageSize, population }));
  }

  private async gradCamOn(
    engine: Engine,
    samples: readonly LesionSample[],
    { imageSize, population }: { imageSize?: number; population?: readonly LesionSample[] },
  ): Promise<GradCamPrediction[]> {
    const size = imageSize ?? this.imageSizeAt(this.epochsDone);
    // A few chosen images of a larger set must see that set as scoring did: its patient counts
    // (metadata), and with patient context all the other images of their patients.
    const metadata = this.metadataFor(population ?? samples);
    const context = this.options.patientContext > 0 ? await this.patientContextFeatures(engine, samples, population ?? samples, size) : null;
    const loader = this.scoringLoader(samples, size);
    const out: GradCamPrediction[] = [];
    for await (const batch of loader.epoch(0)) {
      const request: GradCamRequest = this.batchRequest(batch, metadata);
      if (context) {
        // Their patients' other images, by pooled features: one numbering of patients for both.
        const inBatch = new Set(batch.samples.map((s) => s.imageName));
        const patients = new Set(batch.samples.map((s) => s.patientId));
        const others = [...patients].flatMap((id) => context.byPatient.get(id) ?? []).filter((o) => !inBatch.has(o.imageName));
        const groups = patientGroups([...batch.samples, ...others]);
        request.groups = groups.slice(0, batch.samples.length);
        if (others.length) {
          request.context = {
            embeddings: concatRows(others.map((o) => context.embeddings.get(o.imageName)!)),
            groups: groups.slice(batch.samples.length),
            ...(metadata ? { metadata: metadata(others) } : {}),
          };
        }
      }
      const result = await engine.gradCam(request);
      refuseNonFiniteScores(batch.samples.map((sample, i) => ({ imageName: sample.imageName, logit: result.logits[i] })));
      const cells = result.height * result.width;
      const pixels = size * size * 3;
      batch.samples.forEach((sample, i) => {
        const logit = result.logits[i];
        out.push({
          imageName: sample.imageName,
          patientId: sample.patientId,
          target: sample.target,
          logit,
          probability: sigmoid(logit),
          map: result.maps.slice(i * cells, (i + 1) * cells),
          mapHeight: result.height,
          mapWidth: result.width,
          image: Buffer.from(batch.images.subarray(i * pixels, (i + 1) * pixels)),
          imageSize: size,
        });
      });
    }
    return inSampleOrder(loader, out);
  }

  /**
   * For Grad-CAM with patient context: the pooled features of the chosen samples' patients'
   * images in `population` (the chosen ones among them, scored as a set), by image name, and
   * those images by patient. Grad-CAM gives each batch the others of its patients from here.
   */
  private async patientContextFeatures(engine: Engine, samples: readonly LesionSample[], population: readonly LesionSample[], imageSize: number) {
    const scored = withTheirPatients(samples, population);
    if (!hasPatientWithSeveralImages(scored)) return null; // every image alone: no context to give
    const [{ predictions }] = await this.scoreViews(engine, scored, [null], { imageSize, embeddings: true });
    const embeddings = new Map(predictions.map((p) => [p.imageName, p.embedding!]));
    const byPatient = new Map<string, LesionSample[]>();
    for (const s of scored) {
      if (s.patientId === '') continue; // alone: no context
      const list = byPatient.get(s.patientId) ?? [];
      if (!list.some((o) => o.imageName === s.imageName)) list.push(s);
      byPatient.set(s.patientId, list);
    }
    return { embeddings, byPatient };
  }

  /** Predictions with each image's embedding (`embedding`), in order. */
  async embed(samples: readonly LesionSample[], options: { imageSize?: number; onBatch?: (scored: number, total: number) => void } = {}): Promise<Prediction[]> {
    return (await this.evaluateViews(samples, [null], { ...options, embeddings: true }))[0].predictions;
  }

  /**
   * Predictions plus the (class-weighted) loss and the AUC when the samples have targets. The
   * image size defaults to the one of the last epoch trained.
   */
  async evaluate(samples: readonly LesionSample[], options: { imageSize?: number } = {}): Promise<EvaluationResult> {
    return (await this.evaluateViews(samples, [null], options))[0];
  }

  /**
   * One evaluation per view (test-time augmentation), decoding each batch once: view null is the
   * image as it is, a ViewTransform rearranges the batch's pixels before the engine sees them.
   */
  async evaluateViews(
    samples: readonly LesionSample[],
    views: readonly (ViewTransform | null)[],
    {
      imageSize,
      onBatch,
      embeddings = false,
    }: { imageSize?: number; onBatch?: (scored: number, total: number) => void; /** The first view's embeddings too (the others' would go unused). */ embeddings?: boolean } = {},
  ): Promise<EvaluationResult[]> {
    checkScoringInput(samples, imageSize);
    return this.withEngine('scoring (predict, evaluate, embed)', undefined, (engine) => this.scoreViews(engine, samples, views, { imageSize, onBatch, embeddings }));
  }

  private async scoreViews(
    engine: Engine,
    samples: readonly LesionSample[],
    views: readonly (ViewTransform | null)[],
    { imageSize, onBatch, embeddings = false }: { imageSize?: number; onBatch?: (scored: number, total: number) => void; embeddings?: boolean },
  ): Promise<EvaluationResult[]> {
    const loader = this.scoringLoader(samples, imageSize ?? this.imageSizeAt(this.epochsDone));
    const labelled = samples.every((s) => s.target !== null);
    const metadata = this.metadataFor(samples);
    const perView = views.map(() => ({ predictions: [] as Prediction[], lossSum: 0 }));
    // With patient context, the head runs on whole patients after the backbone (see WholePatientHead).
    const heads = this.options.patientContext > 0 ? views.map(() => new WholePatientHead(engine, metadata, labelled)) : null;
    const keep = (v: number, scoredImages: readonly HeadScored[]) => {
      for (const { sample, embedding, logit } of scoredImages) {
        const prediction: Prediction = { imageName: sample.imageName, patientId: sample.patientId, target: sample.target, logit, probability: sigmoid(logit) };
        if (embeddings && v === 0) prediction.embedding = embedding;
        perView[v].predictions.push(prediction);
      }
    };
    let scored = 0;
    for await (const batch of loader.epoch(0)) {
      for (let v = 0; v < views.length; v++) {
        const view = views[v];
        const images = view ? view(batch.images, batch.batchSize, batch.height, batch.width) : batch.images;
        const result = await engine.evaluate({
          ...this.batchRequest(batch, metadata),
          images,
          labels: labelled && !heads ? batch.labels : undefined,
          embeddings: (embeddings && v === 0) || heads !== null,
        });
        const size = result.embeddingSize ?? 0;
        const features = result.embeddings ?? new Float32Array(0);
        if (heads) keep(v, await heads[v].add(batch.samples, features, size));
        else {
          perView[v].lossSum += result.lossSum ?? 0;
          keep(v, batch.samples.map((sample, i) => ({ sample, embedding: features.subarray(i * size, (i + 1) * size), logit: result.logits[i] })));
        }
      }
      scored += batch.batchSize;
      onBatch?.(scored, samples.length);
    }
    if (heads) {
      for (let v = 0; v < views.length; v++) {
        keep(v, await heads[v].finish());
        perView[v].lossSum = heads[v].lossSum;
      }
    }
    return perView.map(({ predictions: inLoaderOrder, lossSum }) => {
      const predictions = inSampleOrder(loader, inLoaderOrder);
      refuseNonFiniteScores(predictions);
      if (!labelled || predictions.length === 0) return { loss: null, auc: null, aucNote: 'samples without targets', predictions };
      const auc = rocAucOrNull(
        predictions.map((p) => p.target as number),
        predictions.map((p) => p.logit),
      );
      return { loss: lossSum / predictions.length, auc: auc.auc, aucNote: auc.reason, predictions };
    });
  }

  /**
   * Writes a checkpoint: model weights under timm's names, optimizer moments under
   * `optimizer.*`, the RNG state and the resolved options as metadata, in one safetensors file,
   * atomically. An existing file is replaced only with `overwrite`.
   */
  async save(file: string, { overwrite = false } = {}): Promise<void> {
    // Mid-step the weights belong to a batch the checkpoint's header would not record: a resume
    // from it would train that part of the epoch twice.
    if (this.fitting && !this.atSavePoint)
      throw new EngineError(
        'save() while fit() runs would write weights from the middle of an epoch under the last finished one: save in fit\'s afterEpoch or withinEpoch hook, or after fit resolves',
        'ERR_ENGINE_STATE',
      );
    const state = await this.withEngine('save()', undefined, (engine) => engine.exportState());
    if (state.unsaveable) throw new EngineError(`${file} was not written: ${state.unsaveable}`, 'ERR_ENGINE_NONFINITE');
    const tensors: NamedTensor[] = [
      ...state.model,
      ...state.optimizer.map((t) => ({ ...t, name: `optimizer.${t.name}` })),
      { name: 'engine.rng_state', dtype: 'U8', shape: [state.rngState.length], data: state.rngState },
    ];
    const metadata = {
      format: 'pt',
      'melanoma.format': CHECKPOINT_FORMAT,
      'melanoma.options': JSON.stringify(this.options),
      'melanoma.pos_weight': String(this.posWeight),
      'melanoma.step': String(state.step),
      'melanoma.backbone_step': String(state.backboneStep ?? state.step),
      'melanoma.loss_scale': String(state.lossScale),
      'melanoma.epochs_done': String(this.epochsDone),
      'melanoma.history': JSON.stringify(this.history),
      ...(this.inProgress ? { 'melanoma.epoch_in_progress': JSON.stringify(this.inProgress) } : {}),
      ...(this.trainedMetadataKind ? { 'melanoma.metadata_kind': this.trainedMetadataKind } : {}),
      ...(this.trainedOn ? { 'melanoma.train_set': this.trainedOn } : {}),
    };
    await writeFileAtomic(file, safetensorsParts(tensors, metadata), { overwrite });
    this.emit('checkpoint', { path: file, epoch: this.epochsDone });
  }

  /**
   * Restores a checkpoint written by save(): the same model, optimizer state, step, RNG and
   * history, so training continues exactly. `overrides` may change options such as epochs or
   * device; the architecture must stay the same.
   */
  static async load(file: string, overrides: TrainerOptions = {}): Promise<Trainer> {
    const { tensors, metadata } = await readSafetensorsFile(file);
    if (metadata['melanoma.format'] !== CHECKPOINT_FORMAT)
      throw new RangeError(`${file} is not a melanoma-native checkpoint (no '${CHECKPOINT_FORMAT}' metadata): pretrained weights are imported with \`weights import\``);
    const header = readCheckpointHeader(file, metadata);
    // The architecture is the checkpoint's: another would fail as a list of shape mismatches.
    for (const key of ARCHITECTURE_OPTIONS) {
      const given = overrides[key];
      const trained = header.options[key] ?? DEFAULT_OPTIONS[key]; // a header from before the option has its default
      if (given !== undefined && !isDeepStrictEqual(given, trained))
        throw new RangeError(
          `Expected no ${key} other than the checkpoint's with Trainer.load, but received ${describe(given)} where ${file} was trained with ${describe(trained)}: the architecture is the checkpoint's; to change it, train a new model`,
        );
    }
    const { headDropout, ...saved } = header.options;
    // Another device (a GPU checkpoint scored on a laptop) brings its own defaults for precision
    // and memory layout, unless they are given too.
    const deviceChanged = overrides.device !== undefined && overrides.device !== saved.device;
    const deviceDefaults: TrainerOptions = deviceChanged ? { precision: 'auto', channelsLast: undefined, cudaGraph: undefined } : {};
    // A run trained with CUDA graphs continues (or predicts) without them on an engine that has none.
    if (saved.cudaGraph && overrides.cudaGraph === undefined && !torchInfo().cudaGraphs) deviceDefaults.cudaGraph = false;
    // Likewise GPU decoding: it belongs to the machine, not the model, so elsewhere sharp decodes.
    if (saved.decode === 'nvjpeg' && overrides.decode === undefined && (deviceChanged || !torchInfo().nvjpeg)) deviceDefaults.decode = 'sharp';
    // pretrained: null, as the checkpoint already holds the fine-tuned weights.
    const trainer = new Trainer({ ...saved, headDropout: headDropout ?? undefined, pretrained: null, ...deviceDefaults, ...overrides }, { stored: true });
    // The class weight the run trained with, unless a number is given now.
    trainer.posWeight = typeof trainer.options.posWeight === 'number' && overrides.posWeight !== undefined ? trainer.options.posWeight : header.posWeight;
    trainer.epochsDone = header.epochsDone;
    trainer.trainedOn = header.trainSet;
    const inProgress = metadata['melanoma.epoch_in_progress'];
    if (inProgress) {
      const parsed = JSON.parse(inProgress) as EpochInProgress;
      // Only the epoch right after the completed ones can be in progress.
      if (parsed.epoch !== trainer.epochsDone + 1) throw new RangeError(`${file} is inconsistent: it has ${trainer.epochsDone} epochs done but an unfinished epoch ${parsed.epoch}`);
      trainer.inProgress = parsed;
    }
    trainer.trainedMetadataKind = (metadata['melanoma.metadata_kind'] as MetadataKind | undefined) ?? null;
    trainer.history.push(...header.history);
    const engine = await trainer.ensureEngine();
    const state: EngineState = {
      model: tensors.filter((t) => !t.name.startsWith('optimizer.') && !t.name.startsWith('engine.')),
      optimizer: tensors.filter((t) => t.name.startsWith('optimizer.')).map((t) => ({ ...t, name: t.name.slice('optimizer.'.length) })),
      step: header.step,
      backboneStep: header.backboneStep,
      lossScale: header.lossScale,
      rngState: tensors.find((t) => t.name === 'engine.rng_state')?.data ?? Buffer.alloc(0),
    };
    await engine.importState(state, true).catch(async (err) => {
      await trainer.dispose();
      throw err;
    });
    return trainer;
  }

  /** Frees the engine (model, optimizer state, device memory). */
  async dispose(): Promise<void> {
    this.disposed = true;
    await this.engineBuilds.catch(() => undefined); // an engine still being built is freed too
    const engines = [this.engine, ...this.retiredEngines];
    this.engine = null;
    this.retiredEngines.clear();
    for (const engine of engines) if (engine && !engine.disposed) await engine.dispose();
  }
}

