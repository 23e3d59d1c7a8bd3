/** The description of an imported weights file: its JSON sidecar, also kept in its safetensors metadata. */
import type { ModelName } from '../architectures';
import type { Layout } from './layouts';
import type { DroppedTensor } from './map';

export const WEIGHTS_FORMAT = 'melanoma-native/weights@1';
/** The safetensors metadata key that holds the same JSON as the sidecar. */
export const WEIGHTS_METADATA_KEY = 'melanoma.weights';

export interface WeightsInfo {
  format: typeof WEIGHTS_FORMAT;
  name: string;
  /** Absolute path of the imported file, as it was at import time. */
  source: string;
  sourceSha256: string;
  sourceBytes: number;
  /** How the source stored its tensors. */
  container: 'zip' | 'legacy' | 'safetensors';
  layout: Layout;
  model: ModelName;
  widthFactor: number;
  padding: 'symmetric' | 'same';
  bnEps: number;
  bnMomentum: number;
  /** Why this padding/eps (the layout's convention, the file path, or an option). */
  architectureReason: string;
  /** Tensors written (engine names). */
  tensors: number;
  /** 'kept': the file's 1-output head became the classifier; 'dropped': an N-class head was left out; 'absent'. */
  head: 'kept' | 'dropped' | 'absent';
  dropped: DroppedTensor[];
  notes: string[];
  /** Whether a real engine accepted the tensors at import time (false when the engine could not be loaded). */
  engineChecked: boolean;
  importedAt: string;
}
