/** The metadata features: CSV text and TFRecord codes, missing values, images per patient. */
import { METADATA_FEATURES, SITES, encodeSample, metadataEncoder, metadataKind, metadataKindMismatch } from '../../src/data/metadata';
import type { LesionSample } from '../../src/data/types';

function sample(overrides: Partial<LesionSample>): LesionSample {
  return { imageName: 'ISIC_1', patientId: 'IP_1', target: 0, sex: null, ageApprox: null, anatomSite: null, diagnosis: null, image: { kind: 'memory', bytes: Buffer.alloc(0) }, ...overrides };
}

/** The named features of a vector that are not zero. */
function nonZero(v: Float32Array): Record<string, number> {
  return Object.fromEntries(METADATA_FEATURES.map((name, i) => [name, v[i]] as const).filter(([, x]) => x !== 0));
}

describe('encodeSample', () => {
  test('CSV text values: sex, age / 90, the site slot, log1p(images of the patient) / 5', () => {
    const v = encodeSample(sample({ sex: 'female', ageApprox: 45, anatomSite: 'lower extremity' }), 3);
    expect(v).toHaveLength(METADATA_FEATURES.length);
    expect(nonZero(v)).toEqual({ sex_female: 1, age: Math.fround(0.5), site_lower_extremity: 1, patient_images: Math.fround(Math.log1p(3) / 5) });
  });

  test('missing values set their flags and nothing else', () => {
    expect(nonZero(encodeSample(sample({}), 1))).toEqual({ sex_missing: 1, age_missing: 1, site_missing: 1, patient_images: Math.fround(Math.log1p(1) / 5) });
  });

  test('TFRecord integer codes take the slots in order; unknown codes and texts count as missing', () => {
    SITES.forEach((_, code) => expect(encodeSample(sample({ anatomSite: String(code) }), 1)[5 + code]).toBe(1));
    expect(nonZero(encodeSample(sample({ sex: '0', anatomSite: '6' }), 1))).toMatchObject({ sex_male: 1, site_missing: 1 });
    expect(nonZero(encodeSample(sample({ sex: '1', anatomSite: 'elbow' }), 1))).toMatchObject({ sex_female: 1, site_missing: 1 });
  });

  test("case and ISIC 2019's finer torso names are accepted", () => {
    expect(nonZero(encodeSample(sample({ sex: ' MALE ', anatomSite: 'Posterior Torso' }), 1))).toMatchObject({ sex_male: 1, site_torso: 1 });
  });
});

describe('metadataEncoder', () => {
  test('counts images per patient in its population and lays samples out row by row', () => {
    const population = [sample({ imageName: 'a', patientId: 'P1' }), sample({ imageName: 'b', patientId: 'P1' }), sample({ imageName: 'c', patientId: 'P2', sex: 'male' })];
    const encode = metadataEncoder(population);
    const out = encode([population[2], population[0]]);
    const width = METADATA_FEATURES.length;
    expect(out).toHaveLength(2 * width);
    expect(Array.from(out.subarray(0, width))).toEqual(Array.from(encodeSample(population[2], 1)));
    expect(Array.from(out.subarray(width))).toEqual(Array.from(encodeSample(population[0], 2)));
    // A sample from outside the population is its patient's only image, and so is each image
    // without a patient id (a bare JPEG folder), however many there are.
    expect(encode([sample({ patientId: 'P9' })])[12]).toBe(Math.fround(Math.log1p(1) / 5));
    const anonymous = [1, 2, 3].map((i) => sample({ imageName: `x${i}`, patientId: '' }));
    expect(Array.from(metadataEncoder(anonymous)(anonymous)).filter((_, i) => i % width === 12)).toEqual([1, 2, 3].map(() => Math.fround(Math.log1p(1) / 5)));
  });
});

describe('metadataKind', () => {
  test('codes, text, mixed or none; missing values do not count', () => {
    expect(metadataKind([sample({ sex: '1', anatomSite: '3' }), sample({})])).toBe('codes');
    expect(metadataKind([sample({ sex: 'female' }), sample({ anatomSite: 'torso' })])).toBe('text');
    expect(metadataKind([sample({ sex: '0' }), sample({ anatomSite: 'torso' })])).toBe('mixed');
    expect(metadataKind([sample({}), sample({ ageApprox: 40 })])).toBe('none');
  });

  test('only codes against text is a mismatch', () => {
    expect(metadataKindMismatch('codes', 'text')).toMatch(/learned patient metadata \(sex, anatomic site\) from TFRecord integer codes but these samples carry CSV text values/);
    expect(metadataKindMismatch('text', 'codes')).toMatch(/from CSV text values but these samples carry TFRecord integer codes/);
    for (const [a, b] of [['codes', 'codes'], ['text', 'none'], ['none', 'codes'], ['mixed', 'text']] as const) expect(metadataKindMismatch(a, b)).toBeNull();
  });
});
