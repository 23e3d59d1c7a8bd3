/**
 * The one check of option names shared by every options object of the package (Trainer options,
 * augment fields, demo set, metrics): a misspelt name would otherwise be ignored silently.
 */

/** Levenshtein distance, case-blind, for "did you mean" on misspelled option names. */
function editDistance(a: string, b: string): number {
  const row = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    let diagonal = row[0];
    row[0] = i;
    for (let j = 1; j <= b.length; j++) {
      const above = row[j];
      row[j] = Math.min(row[j] + 1, row[j - 1] + 1, diagonal + (a[i - 1].toLowerCase() === b[j - 1].toLowerCase() ? 0 : 1));
      diagonal = above;
    }
  }
  return row[b.length];
}

/** The candidate within a few edits of `name` (the closest), or undefined. */
export function closestName(name: string, candidates: readonly string[]): string | undefined {
  let best: string | undefined;
  let bestDistance = Infinity;
  for (const candidate of candidates) {
    const distance = editDistance(name, candidate);
    if (distance < bestDistance) [best, bestDistance] = [candidate, distance];
  }
  return bestDistance <= Math.max(2, Math.floor(name.length / 3)) ? best : undefined;
}

/**
 * Refuses (TypeError) the first key of `options` not in `names`, with the closest known name and
 * the list. `kind` and `of` say whose options they are: "Unknown augment option 'x'", "Unknown
 * option 'x' of bootstrapAuc".
 */
export function refuseUnknownOptions(options: object, names: readonly string[], { kind = 'option', of }: { kind?: string; of?: string } = {}): void {
  for (const key of Object.keys(options)) {
    if (names.includes(key)) continue;
    const suggestion = closestName(key, names);
    throw new TypeError(`Unknown ${kind} '${key}'${of ? ` of ${of}` : ''}${suggestion ? `: did you mean '${suggestion}'?` : ''} (options: ${names.join(', ')})`);
  }
}
