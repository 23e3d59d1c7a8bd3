/**
 * Scoring with patient context over whole patients. A patient-context model's head attends over
 * the other images of each image's patient that it sees at once. The scoring loader puts each
 * patient's images next to each other and cuts full batches, so a patient may span two batches
 * (or more: ISIC 2020 averages about 16 images per patient, the report's batch is 8), and scored
 * batch by batch each part would see only itself. So the backbone runs batch by batch, the pooled
 * features wait here until their patient is complete, and the head then runs on whole patients at
 * once (Engine.classifyEmbeddings): every image is scored beside all the others of its patient.
 */
import type { LesionSample } from '../data/types';
import { patientGroups } from '../data/patients';
import type { Engine } from '../native';

/** An image scored by the head, with the pooled features the backbone gave it. */
export interface HeadScored {
  sample: LesionSample;
  embedding: Float32Array;
  logit: number;
}

export class WholePatientHead {
  private pending: { sample: LesionSample; embedding: Float32Array }[] = [];
  /** Summed loss of the images scored so far (with labels). */
  lossSum = 0;

  /**
   * @param metadata the metadata encoder of the whole sample set, or null without metadata
   * @param labelled whether to compute the loss (every sample has a target)
   */
  constructor(
    private readonly engine: Engine,
    private readonly metadata: ((samples: readonly LesionSample[]) => Float32Array) | null,
    private readonly labelled: boolean,
  ) {}

  /**
   * Takes a batch's images (in loader order) with their pooled features (evaluate with
   * `embeddings: true`), and scores the patients it completes: all but the last patient of the
   * batch, which may go on in the next one. Resolves with them, in loader order.
   */
  async add(samples: readonly LesionSample[], embeddings: Float32Array, embeddingSize: number): Promise<HeadScored[]> {
    if (embeddings.length !== samples.length * embeddingSize) throw new Error(`internal: ${embeddings.length} embedding values for ${samples.length} images of ${embeddingSize}`);
    samples.forEach((sample, i) => this.pending.push({ sample, embedding: embeddings.slice(i * embeddingSize, (i + 1) * embeddingSize) }));
    return this.score(this.completeCount());
  }

  /** Scores what is still waiting: the last patient of the last batch. */
  finish(): Promise<HeadScored[]> {
    return this.score(this.pending.length);
  }

  /** How many pending images, from the first, belong to patients that no later batch continues. */
  private completeCount(): number {
    if (this.pending.length === 0) return 0;
    const last = this.pending[this.pending.length - 1].sample.patientId;
    if (last === '') return this.pending.length; // an image without patient_id is a patient alone
    let start = this.pending.length;
    while (start > 0 && this.pending[start - 1].sample.patientId === last) start--;
    return start;
  }

  private async score(count: number): Promise<HeadScored[]> {
    if (count === 0) return [];
    const rows = this.pending.splice(0, count);
    const samples = rows.map((r) => r.sample);
    const result = await this.engine.classifyEmbeddings({
      embeddings: concatRows(rows.map((r) => r.embedding)),
      batchSize: rows.length,
      groups: patientGroups(samples),
      ...(this.metadata ? { metadata: this.metadata(samples) } : {}),
      ...(this.labelled ? { labels: Float32Array.from(samples, (s) => s.target as number) } : {}),
    });
    this.lossSum += result.lossSum ?? 0;
    return rows.map((r, i) => ({ ...r, logit: result.logits[i] }));
  }
}

/** Equal-length rows (embeddings) end to end, as the engine takes them. */
export function concatRows(rows: readonly Float32Array[]): Float32Array {
  const size = rows.length ? rows[0].length : 0;
  const out = new Float32Array(rows.length * size);
  rows.forEach((row, i) => out.set(row, i * size));
  return out;
}
