/** Synthetic predictions that look like a class-weighted melanoma model's out-of-fold output. */
import { lcg } from '../metrics/brute';

export interface SyntheticOptions {
  patients?: number;
  folds?: number;
  seed?: number;
  prevalence?: number;
}

/** CSV text with image_name,target,score,patient_id,fold; patients have 1-8 images, folds grouped by patient. */
export function syntheticPredictionsCsv(options: SyntheticOptions = {}): string {
  const { patients = 600, folds = 5, seed = 1, prevalence = 0.04 } = options;
  const r = lcg(seed);
  const normal = (): number => (r() + r() + r() + r() + r() + r() - 3) * Math.SQRT2;
  const lines = ['image_name,target,score,patient_id,fold'];
  let image = 0;
  for (let p = 0; p < patients; p++) {
    const k = 1 + Math.floor(r() * 8);
    const patientRisk = normal() * 0.7;
    const fold = p % folds;
    for (let i = 0; i < k; i++) {
      const target = r() < prevalence ? 1 : 0;
      // Melanomas score higher; inflated logits (x2.5 + offset) mimic pos_weight training.
      const z = (target ? 1.9 : -1.2) + patientRisk + normal();
      const prob = 1 / (1 + Math.exp(-(2.5 * z + 2)));
      lines.push(`ISIC_${String(image++).padStart(7, '0')},${target},${prob.toPrecision(6)},IP_${String(p).padStart(7, '0')},${fold}`);
    }
  }
  return lines.join('\n') + '\n';
}
