/**
 * Small seeded randomness for data order and folds: the same seed gives the same stream on
 * every platform (no Math.random).
 */

/** splitmix32 finaliser: turns related integers (seed, epoch) into unrelated seeds. */
export function mixSeed(...parts: number[]): number {
  let h = 0x9e3779b9;
  for (const p of parts) {
    h = Math.imul(h ^ (p >>> 0), 0x85ebca6b) ^ Math.imul((p / 0x100000000) >>> 0, 0xc2b2ae35);
    h ^= h >>> 15;
    h = Math.imul(h, 0x2c1b3c6d);
    h ^= h >>> 12;
    h = Math.imul(h, 0x297a2d39);
    h ^= h >>> 15;
  }
  return h >>> 0;
}

/** mulberry32: a 32-bit state generator, returns floats in [0, 1). */
export function mulberry32(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** Fisher-Yates shuffle in place. */
export function shuffleInPlace<T>(items: T[], random: () => number): T[] {
  for (let i = items.length - 1; i > 0; i--) {
    const j = Math.floor(random() * (i + 1));
    [items[i], items[j]] = [items[j], items[i]];
  }
  return items;
}

/**
 * A seeded pick of `count` items (all of them when count >= length). inspect and the start of
 * train/cv pick their images to check with it, so one seed checks the same images in both.
 */
export function seededSample<T>(items: readonly T[], count: number, seed: number): T[] {
  return shuffleInPlace(items.slice(), mulberry32(mixSeed(seed, 0x5a3e))).slice(0, count);
}
