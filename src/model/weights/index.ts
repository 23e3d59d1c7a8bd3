/** Importing pretrained EfficientNet weights (lukemelas, torchvision, timm) for the engine. */
export { importWeights, architectureFor, validateWeightsName } from './import';
export type { ImportWeightsOptions, ImportWeightsResult } from './import';
export { WeightsError } from './errors';
export type { WeightsErrorCode } from './errors';
export type { WeightsInfo } from './info';
export { WEIGHTS_FORMAT } from './info';
export { LAYOUTS, engineTensors, sourceModuleName } from './layouts';
export type { Layout } from './layouts';
export { mapToEngine } from './map';
export { readWeightsFile, decodeWeights } from './read';
export type { WeightsFile } from './read';
export type { SourceTensor, SourceDType } from './torch-file';
export { resolvePretrained, loadPretrainedBackbone, pretrainedOptions, listImportedWeights, DEFAULT_WEIGHTS_DIR } from './store';
