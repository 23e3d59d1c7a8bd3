/**
 * Public API of melanoma-native: the Trainer and what a script needs around it (datasets, folds,
 * metrics, reports). The CLI (src/cli.ts) is a thin layer over these. Every type a public
 * signature names is exported beside its module's values (test/api-surface.test.ts checks it).
 */
import './threadpool'; // first: sizes libuv's pool (sharp's decodes) before anything starts it
export { Trainer, balancedPosWeight } from './train/trainer';
export type { BatchProgress, EpochInProgress, EpochRecord, EvaluationResult, FitData, FitOptions, GradCamPrediction, Prediction, TrainerEvents, ViewTransform } from './train/trainer';
export { trainRun, resumeRun, createRunDir, DEMO_PRESET } from './train/run';
export type { TrainRunOptions, TrainRunResult, ResumeOptions, RunHooks } from './train/run';
export { crossValidate, summariseCv } from './train/cv';
export type { CrossValidateOptions, CrossValidateResult } from './train/cv';
export { learningRateAt, earlyStopReason, imageSizeForEpoch, SCHEDULE_NAMES } from './train/schedule';
export type { AucHistoryEntry, ImageSizeStage, ScheduleName, ScheduleSettings } from './train/schedule';
export { predict, viewTransform, TTA_VIEWS } from './predict';
export type { PredictOptions, PredictProgress, PredictResult, EnsembleMode, ScoringOptions, SubmissionRow, TtaView } from './predict';
export { embedDataset, uglyDucklingScores, npyFloat32 } from './embed';
export type { EmbedOptions, EmbedResult } from './embed';
export { explainImages, gradCamPng } from './explain';
export type { ExplainOptions, ExplainResult } from './explain';
export { fitCalibrator, applyCalibrator, readCalibrator, CalibratorError, CALIBRATOR_KINDS } from './calibrate';
export type { Calibrator, CalibratorKind, CalibratorOperatingPoint, CalibrationReport, FitCalibratorOptions, FitCalibratorResult, ScoredImage, ScoreQuality } from './calibrate';
export { calibratePredictionsFile } from './cli/calibrate';
export type { CalibrateFileOptions, CalibrateFileResult } from './cli/calibrate';
export { ensemblePredictionFiles } from './cli/ensemble';
export type { EnsembleResult } from './cli/ensemble';
export { comparePredictionFiles, joinPredictionFiles } from './cli/compare';
export type { PredictionsComparison } from './cli/compare';
export type { TrainerOptions, ResolvedOptions, AugmentPreset, Device, Precision } from './model/config';
export { MODEL_NAMES, SCALING, buildModelSpec, countParameters } from './model/architectures';
export type { ArchitectureOptions, ModelName, Scaling } from './model/architectures';
export { openDataset } from './data/isic';
export type { IsicDataset, OpenDatasetOptions } from './data/isic';
export { createLoader } from './data/loader';
export type { Loader } from './data/loader';
export { ensureDemoDataset, demoCacheDir } from './data/demo';
export type { DemoOptions } from './data/demo';
export { DataError } from './data/errors';
export type { DataErrorCode, DataErrorContext } from './data/errors';
export { convertDataset, ConvertInterruptedError } from './data/convert';
export type { ConvertedFile, ConvertOptions, ConvertResult } from './data/convert';
export type { ImageProgress } from './data/concurrency';
export type { ResizeFit } from './data/images';
export { inspectDataset, formatInspection } from './data/inspect';
export type { CountSummary, DatasetInspection, InspectOptions, SamePictureMember } from './data/inspect';
export { assessImageContent, findSamePictures, sampleDegenerateImages } from './data/image-content';
export type { DegenerateSample, ImageContentAssessment, ImageContentDefect } from './data/image-content';
export type { LesionSample, Batch, DecodeBackend, LoaderOptions, LoaderStats, ImageSource } from './data/types';
export { stratifiedGroupKFold, assignFileFolds, splitByFold, writeFoldsCsv, readFoldsCsv } from './folds';
export type { FoldAssignment, FoldSample } from './folds';
export * from './metrics';
export { evaluatePredictionsFile } from './cli/evaluate';
export type { EvaluateFileOptions, EvaluateFileResult } from './cli/evaluate';
export type { Evaluation, EvaluationOptions, HardCase, Histogram, RocJson, ScoreScale } from './report/evaluation';
export { PredictionsFileError } from './report/predictions-csv';
export type { PredictionRow } from './report/predictions-csv';
// Every refusal to replace a user's file (checkpoint, results, output folder) is an OutputExistsError;
// an output folder that cannot be made where asked, an OutputLocationError.
export { OutputExistsError, OutputLocationError } from './files';
export { Engine, EngineError, NativeLoadError, torchInfo } from './native';
export type {
  AugmentSpec,
  BenchmarkStepsResult,
  ClassifyEmbeddingsRequest,
  EngineConfig,
  EngineErrorCode,
  EngineInfo,
  EngineState,
  EvaluateRequest,
  EvaluateResult,
  GradCamRequest,
  GradCamResult,
  ImageBatch,
  MemoryStats,
  ModelSpec,
  NamedTensor,
  StageSpec,
  StepMode,
  TensorDType,
  TorchInfo,
  TrainStepRequest,
  TrainStepResult,
} from './native';
export { SafetensorsError } from './train/safetensors';
export { importWeights, resolvePretrained, listImportedWeights, WeightsError } from './model/weights';
export type { ImportWeightsOptions, ImportWeightsResult, WeightsInfo } from './model/weights';
export type { WeightsErrorCode } from './model/weights/errors';
export type { Layout } from './model/weights/layouts';
export type { DroppedTensor } from './model/weights/map';
export type { PretrainedWeights } from './model/weights/store';
export { runModelBenchmark } from './bench/model-bench';
export type { ModelBenchmarkKey, ModelBenchmarkOptions, ModelBenchmarkResult } from './bench/model-bench';
export { runDataBenchmark } from './bench/data-bench';
export type { DataBenchmarkOptions, DataBenchmarkResult, DataBenchmarkRow } from './bench/data-bench';
