/**
 * Patient metadata as model input (the report's "metadata fusion" future work): a fixed-length
 * float vector per image, fused with the image features by the engine's metadata branch. The
 * features follow the SIIM-ISIC 2020 winners' metadata branch: sex, age / 90, anatomic site
 * one-hot with a missing flag, and log1p(images of the same patient): how many lesions a patient
 * had photographed is itself informative (the "ugly duckling" context).
 */
import { LesionSample } from './types';

export const METADATA_FEATURES = [
  'sex_male',
  'sex_female',
  'sex_missing',
  'age',
  'age_missing',
  'site_head_neck',
  'site_upper_extremity',
  'site_lower_extremity',
  'site_torso',
  'site_palms_soles',
  'site_oral_genital',
  'site_missing',
  'patient_images',
] as const;

/** Units of the metadata branch's two hidden layers. */
export const METADATA_HIDDEN = 32;

/**
 * ISIC 2020's anatomic sites in slot order. TFRecords carry integer codes whose table is not
 * published: code k takes slot k. Train and predict from the same kind of source (or join the
 * CSV on image_name), so a site always lands in the same slot.
 */
export const SITES = ['head/neck', 'upper extremity', 'lower extremity', 'torso', 'palms/soles', 'oral/genital'] as const;

/** 'male'/'female' as in the CSV; TFRecord codes '0' and '1' take the same two slots in order. */
function sexSlot(sex: string | null): 0 | 1 | null {
  const value = sex?.trim().toLowerCase();
  if (value === 'male' || value === '0') return 0;
  if (value === 'female' || value === '1') return 1;
  return null;
}

function siteSlot(site: string | null): number | null {
  const value = site?.trim().toLowerCase();
  if (!value) return null;
  if (/^\d+$/.test(value)) {
    const code = Number(value);
    return code < SITES.length ? code : null;
  }
  const exact = SITES.indexOf(value as (typeof SITES)[number]);
  if (exact >= 0) return exact;
  // ISIC 2019's finer torso names (anterior/posterior/lateral torso) are torso.
  return value.includes('torso') ? SITES.indexOf('torso') : null;
}

/**
 * How a set spells sex and site: TFRecord integer 'codes', CSV 'text', 'mixed', or 'none' (no
 * values). A model must be scored on the spelling it learned: code k and the k-th name share a
 * slot only if the unpublished code table happens to follow SITES.
 */
export type MetadataKind = 'codes' | 'text' | 'mixed' | 'none';

export function metadataKind(samples: readonly LesionSample[]): MetadataKind {
  let codes = false;
  let text = false;
  for (const s of samples) {
    for (const value of [s.sex, s.anatomSite]) {
      const v = value?.trim();
      if (!v) continue;
      if (/^\d+$/.test(v)) codes = true;
      else text = true;
    }
  }
  return codes && text ? 'mixed' : codes ? 'codes' : text ? 'text' : 'none';
}

/**
 * Why samples spelled as `scored` cannot go to a model that learned from `trained` samples, or
 * null when they can. Only codes against text is refused: missing values are just missing.
 */
export function metadataKindMismatch(trained: MetadataKind, scored: MetadataKind): string | null {
  const spelled = { codes: 'TFRecord integer codes', text: 'CSV text values' } as const;
  if ((trained === 'codes' && scored === 'text') || (trained === 'text' && scored === 'codes'))
    return (
      `this model learned patient metadata (sex, anatomic site) from ${spelled[trained]} but these samples carry ${spelled[scored]}: ` +
      `the two land in different feature slots. Score the same kind of source it trained on (TFRecords, or TFRecords joined with --csv)`
    );
  return null;
}

/** The features of one sample; `patientImages` counts its patient's images in the set. */
export function encodeSample(sample: LesionSample, patientImages: number): Float32Array {
  const v = new Float32Array(METADATA_FEATURES.length);
  const sex = sexSlot(sample.sex);
  if (sex === null) v[2] = 1;
  else v[sex] = 1;
  if (sample.ageApprox === null) v[4] = 1;
  else v[3] = sample.ageApprox / 90;
  const site = siteSlot(sample.anatomSite);
  if (site === null) v[11] = 1;
  else v[5 + site] = 1;
  // log1p(1) .. log1p(~150) mapped to about 0.14 .. 1.
  v[12] = Math.log1p(patientImages) / 5;
  return v;
}

/**
 * An encoder for batches drawn from `population` (a training fold, a validation fold, a test
 * set): images per patient are counted in that population, as a model sees a patient's images
 * together at prediction time too.
 */
export function metadataEncoder(population: readonly LesionSample[]): (samples: readonly LesionSample[]) => Float32Array {
  const perPatient = new Map<string, number>();
  for (const s of population) if (s.patientId !== '') perPatient.set(s.patientId, (perPatient.get(s.patientId) ?? 0) + 1);
  return (samples) => {
    const out = new Float32Array(samples.length * METADATA_FEATURES.length);
    // An image without a patient id (a bare folder of JPEGs) is its patient's only image.
    samples.forEach((s, i) => out.set(encodeSample(s, perPatient.get(s.patientId) ?? 1), i * METADATA_FEATURES.length));
    return out;
  };
}
