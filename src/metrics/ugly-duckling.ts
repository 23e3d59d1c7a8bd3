/**
 * The "ugly duckling" sign on a model's features: how far a lesion's embedding lies from those of
 * the same patient's other lesions (dermatologists look for the lesion unlike the others).
 */

/**
 * 1 - cosine similarity between each embedding and the mean embedding of the same patient's
 * other images; null for a patient's only image (or an image without a patient id).
 */
export function uglyDucklingScores(predictions: readonly { patientId: string; embedding?: Float32Array }[]): (number | null)[] {
  const byPatient = new Map<string, number[]>();
  predictions.forEach((p, i) => {
    if (!p.embedding) throw new RangeError(`Expected an embedding for every image but image ${i + 1} has none`);
    // Embeddings of two models (or a mistake) would compare as NaN.
    if (p.embedding.length !== predictions[0].embedding!.length)
      throw new RangeError(`Expected embeddings of one length (image 1 has ${predictions[0].embedding!.length} values) but image ${i + 1} has ${p.embedding.length}: score embeddings of one model together`);
    if (!p.patientId) return;
    const members = byPatient.get(p.patientId);
    if (members) members.push(i);
    else byPatient.set(p.patientId, [i]);
  });
  return predictions.map((p, i) => {
    const members = p.patientId ? byPatient.get(p.patientId)! : [i];
    if (members.length < 2) return null;
    const e = p.embedding as Float32Array;
    // The others' mean, without this image.
    const mean = new Float64Array(e.length);
    for (const j of members) {
      if (j === i) continue;
      const other = predictions[j].embedding as Float32Array;
      for (let k = 0; k < e.length; k++) mean[k] += other[k] / (members.length - 1);
    }
    let dot = 0, ee = 0, mm = 0;
    for (let k = 0; k < e.length; k++) {
      dot += e[k] * mean[k];
      ee += e[k] * e[k];
      mm += mean[k] * mean[k];
    }
    return ee === 0 || mm === 0 ? 1 : 1 - dot / Math.sqrt(ee * mm);
  });
}

