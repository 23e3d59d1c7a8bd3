/**
 * Public API of melanoma-native: the Trainer and what a script needs around it (datasets, folds,
 * metrics, reports). The CLI (src/cli.ts) is a thin layer over these.
 */
import './threadpool'; // first: sizes libuv's pool (sharp's decodes) before anything starts it
export { Trainer, balancedPosWeight } from './train/trainer';
export type { BatchProgress, EpochInProgress, EpochRecord, EvaluationResult, FitData, FitOptions, GradCamPrediction, Prediction, TrainerEvents } from './train/trainer';
export { trainRun, resumeRun, createRunDir, DEMO_PRESET } from './train/run';
export type { TrainRunOptions, TrainRunResult, ResumeOptions, RunHooks } from './train/run';
export { crossValidate, summariseCv } from './train/cv';
export type { CrossValidateOptions, CrossValidateResult } from './train/cv';
export { learningRateAt, earlyStopReason, imageSizeForEpoch, SCHEDULE_NAMES } from './train/schedule';
export type { ScheduleName } from './train/schedule';
export { predict, viewTransform, TTA_VIEWS } from './predict';
export type { PredictOptions, PredictResult, EnsembleMode, TtaView } from './predict';
export { embedDataset, uglyDucklingScores, npyFloat32 } from './embed';
export { explainImages, gradCamPng } from './explain';
export type { ExplainOptions, ExplainResult } from './explain';
export type { EmbedOptions, EmbedResult } from './embed';
export { fitCalibrator, applyCalibrator, readCalibrator, CalibratorError, CALIBRATOR_KINDS } from './calibrate';
export type { Calibrator, CalibratorKind, CalibrationReport } from './calibrate';
export { calibratePredictionsFile } from './cli/calibrate';
export { ensemblePredictionFiles } from './cli/ensemble';
export { comparePredictionFiles, joinPredictionFiles } from './cli/compare';
export type { TrainerOptions, Device, Precision } from './model/config';
export { MODEL_NAMES, SCALING, buildModelSpec, countParameters } from './model/architectures';
export type { ModelName } from './model/architectures';
export { openDataset } from './data/isic';
export type { IsicDataset, OpenDatasetOptions } from './data/isic';
export { createLoader } from './data/loader';
export { ensureDemoDataset, demoCacheDir } from './data/demo';
export { DataError } from './data/errors';
export { convertDataset } from './data/convert';
export type { ConvertOptions, ConvertResult } from './data/convert';
export { inspectDataset, formatInspection } from './data/inspect';
export type { DatasetInspection, InspectOptions } from './data/inspect';
export { assessImageContent, findSamePictures, sampleDegenerateImages } from './data/image-content';
export type { ImageContentAssessment, ImageContentDefect } from './data/image-content';
export type { LesionSample, Batch, LoaderOptions } from './data/types';
export { stratifiedGroupKFold, assignFileFolds, splitByFold, writeFoldsCsv, readFoldsCsv } from './folds';
export * from './metrics';
export { evaluatePredictionsFile } from './cli/evaluate';
// Every refusal to replace a user's file (checkpoint, results, output folder) is one of these.
export { OutputExistsError } from './files';
export { Engine, EngineError, NativeLoadError, torchInfo } from './native';
export { importWeights, resolvePretrained, listImportedWeights, WeightsError } from './model/weights';
export type { ImportWeightsOptions, ImportWeightsResult, WeightsInfo } from './model/weights';
export { runModelBenchmark } from './bench/model-bench';
export { runDataBenchmark } from './bench/data-bench';
