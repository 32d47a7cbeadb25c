/**
 * The names of the configuration keys as a tree (leaves and the groups above them), and the
 * suggestions for a name that is not one of them: a near spelling, or the same name at another
 * level ("bucket" for "s3.bucket").
 */

/** The dotted key names of the KEYS table, with their groups. */
export class KeyNames {
  readonly #leaves: Set<string>;
  readonly #groups: Set<string>;
  readonly #all: string[];

  constructor(keys: readonly string[]) {
    this.#leaves = new Set(keys);
    this.#groups = new Set(keys.flatMap((k) => k.split('.').slice(0, -1).map((_, i, a) => a.slice(0, i + 1).join('.'))));
    this.#all = [...this.#leaves, ...this.#groups];
  }

  isLeaf(path: string): boolean {
    return this.#leaves.has(path);
  }

  isGroup(path: string): boolean {
    return this.#groups.has(path);
  }

  /** Known keys an unknown one was most likely meant to be. */
  suggest(path: string): string[] {
    return suggestKeys(path, this.#all);
  }

  /** The names directly under `prefix` ("" for the top level). */
  childrenOf(prefix: string): string[] {
    return childrenOf(prefix, this.#all);
  }
}

function levenshtein(a: string, b: string): number {
  let prev = Array.from({ length: b.length + 1 }, (_, i) => i);
  for (let i = 1; i <= a.length; i++) {
    const cur = [i];
    for (let j = 1; j <= b.length; j++) {
      const cost = a[i - 1] === b[j - 1] ? 0 : 1;
      cur[j] = Math.min((prev[j] ?? 0) + 1, (cur[j - 1] ?? 0) + 1, (prev[j - 1] ?? 0) + cost);
    }
    prev = cur;
  }
  return prev[b.length] ?? 0;
}

/** Known keys an unknown one was most likely meant to be: near spellings, or the same name at another level. */
function suggestKeys(path: string, known: readonly string[]): string[] {
  const closest = (distance: (k: string) => number, limit: number): string[] => {
    let best: string[] = [];
    let bestDistance = limit + 1;
    for (const k of known) {
      const d = distance(k);
      if (d > limit) continue;
      if (d < bestDistance) [best, bestDistance] = [[k], d];
      else if (d === bestDistance) best.push(k);
    }
    return best;
  };
  const lower = path.toLowerCase();
  const near = closest((k) => levenshtein(lower, k.toLowerCase()), Math.max(1, Math.floor(path.length / 4)));
  if (near.length > 0) return near;
  // A key put at the wrong level, e.g. top-level "bucket" for "s3.bucket".
  const leaf = (path.split('.').at(-1) ?? '').toLowerCase();
  return closest((k) => levenshtein(leaf, (k.split('.').at(-1) ?? '').toLowerCase()), leaf.length >= 6 ? 1 : 0);
}

function childrenOf(prefix: string, known: readonly string[]): string[] {
  const depth = prefix ? prefix.split('.').length : 0;
  return [...new Set(known.filter((k) => (prefix ? k.startsWith(`${prefix}.`) : true)).map((k) => k.split('.')[depth] ?? ''))];
}
