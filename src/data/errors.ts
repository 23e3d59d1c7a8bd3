/**
 * The one error class of the data pipeline. `code` says what went wrong; the message names the
 * file (record, byte offset, image) and the fix. Tests and callers branch on `code`.
 */
export type DataErrorCode =
  | 'ERR_TFRECORD_TRUNCATED' // the file ends inside a record
  | 'ERR_TFRECORD_CRC' // a length or payload CRC does not match
  | 'ERR_TFRECORD_IO' // the file could not be opened or read
  | 'ERR_TFRECORD_COUNT' // the record count in the file name differs from what the file holds
  | 'ERR_EXAMPLE_MALFORMED' // a payload is not a valid tf.train.Example
  | 'ERR_EXAMPLE_FEATURE' // a feature is missing or has the wrong type
  | 'ERR_DATASET_EMPTY' // a folder holds nothing readable
  | 'ERR_DATASET_LABELS' // training images without a target
  | 'ERR_DATASET_DUPLICATE' // an image name appears twice (CSV rows or TFRecord records)
  | 'ERR_DATASET_NOT_FOUND' // the path does not exist
  | 'ERR_CSV' // a CSV is malformed or lacks a column
  | 'ERR_IMAGE_MISSING' // a CSV row names a JPEG that is not there
  | 'ERR_IMAGE_FORMAT' // the bytes are not a JPEG
  | 'ERR_IMAGE_DECODE'; // sharp could not decode the JPEG

export interface DataErrorContext {
  file?: string;
  recordIndex?: number;
  /** Byte offset in `file` (the record's first byte for framing errors). */
  offset?: number;
  imageName?: string;
  cause?: unknown;
}

export class DataError extends Error {
  override name = 'DataError';
  readonly file?: string;
  readonly recordIndex?: number;
  readonly offset?: number;
  readonly imageName?: string;

  constructor(
    readonly code: DataErrorCode,
    message: string,
    context: DataErrorContext = {},
  ) {
    super(message, context.cause === undefined ? undefined : { cause: context.cause });
    this.file = context.file;
    this.recordIndex = context.recordIndex;
    this.offset = context.offset;
    this.imageName = context.imageName;
  }
}
