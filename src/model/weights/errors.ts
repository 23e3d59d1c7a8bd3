/**
 * Errors of the weights importer. `code` says what went wrong; the message names the file (and
 * the tensor key when there is one) and what to do about it.
 */
export type WeightsErrorCode =
  /** Not a readable .pth/.pt/.safetensors file: truncated, corrupt, unsupported format/opcode. */
  | 'ERR_WEIGHTS_FORMAT'
  /** A readable file whose keys are none of the three known layouts (or not the one asked for). */
  | 'ERR_WEIGHTS_LAYOUT'
  /** Keys or shapes that do not fit the EfficientNet the file seems to hold (or the one asked for). */
  | 'ERR_WEIGHTS_MISMATCH'
  /** A weight tensor that is not floating point. */
  | 'ERR_WEIGHTS_DTYPE'
  /** The output exists and --force was not given. */
  | 'ERR_WEIGHTS_EXISTS'
  /** A --pretrained name/path that resolves to nothing usable. */
  | 'ERR_WEIGHTS_NOT_FOUND';

export class WeightsError extends Error {
  override name = 'WeightsError';
  constructor(
    message: string,
    readonly code: WeightsErrorCode,
  ) {
    super(message);
  }
}
