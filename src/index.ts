/**
 * Public API of melanoma-native: the Trainer and what a script needs around it (datasets, folds,
 * metrics, reports). The CLI (src/cli.ts) is a thin layer over these.
 */
import './threadpool'; // first: sizes libuv's pool (sharp's decodes) before anything starts it
export { Trainer, balancedPosWeight } from './train/trainer';
export type { BatchProgress, EpochInProgress, EpochRecord, EvaluationResult, FitData, FitOptions, GradCamPrediction, Prediction, TrainerEvents, ViewTransform } from './train/trainer';
export { trainRun, resumeRun, createRunDir, DEMO_PRESET } from './train/run';
export type { TrainRunOptions, TrainRunResult, ResumeOptions, RunHooks } from './train/run';
export { crossValidate, summariseCv } from './train/cv';
export type { CrossValidateOptions, CrossValidateResult } from './train/cv';
export { learningRateAt, earlyStopReason, imageSizeForEpoch, SCHEDULE_NAMES } from './train/schedule';
export type { ImageSizeStage, ScheduleName } from './train/schedule';
export { predict, viewTransform, TTA_VIEWS } from './predict';
export type { PredictOptions, PredictResult, EnsembleMode, TtaView } from './predict';
export { embedDataset, uglyDucklingScores, npyFloat32 } from './embed';
export { explainImages, gradCamPng } from './explain';
export type { ExplainOptions, ExplainResult } from './explain';
export type { EmbedOptions, EmbedResult } from './embed';
export { fitCalibrator, applyCalibrator, readCalibrator, CalibratorError, CALIBRATOR_KINDS } from './calibrate';
export type { Calibrator, CalibratorKind, CalibrationReport, FitCalibratorOptions, FitCalibratorResult, ScoredImage } from './calibrate';
export { calibratePredictionsFile } from './cli/calibrate';
export { ensemblePredictionFiles } from './cli/ensemble';
export { comparePredictionFiles, joinPredictionFiles } from './cli/compare';
export type { TrainerOptions, ResolvedOptions, AugmentPreset, Device, Precision } from './model/config';
export { MODEL_NAMES, SCALING, buildModelSpec, countParameters } from './model/architectures';
export type { ModelName } from './model/architectures';
export { openDataset } from './data/isic';
export type { IsicDataset, OpenDatasetOptions } from './data/isic';
export { createLoader } from './data/loader';
export { ensureDemoDataset, demoCacheDir } from './data/demo';
export type { DemoOptions } from './data/demo';
export { DataError } from './data/errors';
export type { DataErrorCode } from './data/errors';
export { convertDataset, ConvertInterruptedError } from './data/convert';
export type { ConvertOptions, ConvertResult } from './data/convert';
export { inspectDataset, formatInspection } from './data/inspect';
export type { DatasetInspection, InspectOptions } from './data/inspect';
export { assessImageContent, findSamePictures, sampleDegenerateImages } from './data/image-content';
export type { ImageContentAssessment, ImageContentDefect } from './data/image-content';
export type { LesionSample, Batch, LoaderOptions, LoaderStats, ImageSource } from './data/types';
export { stratifiedGroupKFold, assignFileFolds, splitByFold, writeFoldsCsv, readFoldsCsv } from './folds';
export type { FoldAssignment, FoldSample } from './folds';
export * from './metrics';
export { evaluatePredictionsFile } from './cli/evaluate';
export { PredictionsFileError } from './report/predictions-csv';
export type { PredictionRow } from './report/predictions-csv';
// Every refusal to replace a user's file (checkpoint, results, output folder) is an OutputExistsError;
// an output folder that cannot be made where asked, an OutputLocationError.
export { OutputExistsError, OutputLocationError } from './files';
export { Engine, EngineError, NativeLoadError, torchInfo } from './native';
export type { AugmentSpec, EngineErrorCode, EngineInfo } from './native';
export { SafetensorsError } from './train/safetensors';
export { importWeights, resolvePretrained, listImportedWeights, WeightsError } from './model/weights';
export type { ImportWeightsOptions, ImportWeightsResult, WeightsInfo } from './model/weights';
export { runModelBenchmark } from './bench/model-bench';
export { runDataBenchmark } from './bench/data-bench';

// Types the signatures above name, for scripts to write down (test/api-surface.test.ts keeps this complete).
export type { DataBenchmarkOptions, DataBenchmarkResult, DataBenchmarkRow } from './bench/data-bench';
export type { ModelBenchmarkKey, ModelBenchmarkOptions, ModelBenchmarkResult } from './bench/model-bench';
export type { CalibratorOperatingPoint, ScoreQuality } from './calibrate';
export type { CalibrateFileOptions, CalibrateFileResult } from './cli/calibrate';
export type { PredictionsComparison } from './cli/compare';
export type { EnsembleResult } from './cli/ensemble';
export type { EvaluateFileOptions, EvaluateFileResult } from './cli/evaluate';
export type { ImageProgress } from './data/concurrency';
export type { ConvertedFile } from './data/convert';
export type { DataErrorContext } from './data/errors';
export type { DegenerateSample } from './data/image-content';
export type { ResizeFit } from './data/images';
export type { CountSummary, SamePictureMember } from './data/inspect';
export type { Loader } from './data/loader';
export type { DecodeBackend } from './data/types';
export type { ArchitectureOptions, Scaling } from './model/architectures';
export type { WeightsErrorCode } from './model/weights/errors';
export type { Layout } from './model/weights/layouts';
export type { DroppedTensor } from './model/weights/map';
export type { PretrainedWeights } from './model/weights/store';
export type { BenchmarkStepsResult, ClassifyEmbeddingsRequest, EngineConfig, EngineState, EvaluateRequest, EvaluateResult, GradCamRequest, GradCamResult, ImageBatch, MemoryStats, ModelSpec, NamedTensor, StageSpec, StepMode, TensorDType, TorchInfo, TrainStepRequest, TrainStepResult } from './native';
export type { PredictProgress, ScoringOptions, SubmissionRow } from './predict';
export type { Evaluation, EvaluationOptions, HardCase, Histogram, RocJson, ScoreScale } from './report/evaluation';
export type { AucHistoryEntry, ScheduleSettings } from './train/schedule';
