/**
 * Size and duration values as people write them in YAML and env vars
 * ("16MiB", "5MB", "250ms", "1h30m"), and back again for messages and docs.
 */

/** The outcome of parsing one value: a number, or a sentence saying what is wrong. */
export type UnitResult = { value: number } | { error: string };

const SIZE_UNITS: Readonly<Record<string, number>> = {
  b: 1,
  kb: 1e3,
  mb: 1e6,
  gb: 1e9,
  tb: 1e12,
  kib: 2 ** 10,
  mib: 2 ** 20,
  gib: 2 ** 30,
  tib: 2 ** 40,
};

const SIZE_HINT = 'use bytes (e.g. 16777216) or a number with a unit: KiB, MiB, GiB, TiB, KB, MB, GB, TB';

/**
 * Parses a size: a non-negative integer (bytes) or a number with a unit.
 * Units are case-insensitive; binary (KiB) and decimal (KB) are both accepted.
 */
export function parseSize(input: unknown): UnitResult {
  if (typeof input === 'number') {
    return Number.isSafeInteger(input) && input >= 0
      ? { value: input }
      : { error: `is not a whole number of bytes; ${SIZE_HINT}` };
  }
  if (typeof input !== 'string') return { error: `is not a size; ${SIZE_HINT}` };
  const m = /^(\d+(?:\.\d+)?)\s*([a-z]*)$/i.exec(input.trim());
  if (!m) return { error: `is not a size; ${SIZE_HINT}` };
  const [, num = '', rawUnit = ''] = m;
  const unit = rawUnit.toLowerCase();
  // A bare "M" means MiB to some tools and MB to others; refuse to guess.
  if (['k', 'm', 'g', 't'].includes(unit)) {
    const u = unit.toUpperCase();
    return { error: `has the ambiguous unit "${rawUnit}"; write ${num}${u}iB (binary) or ${num}${u}B (decimal)` };
  }
  const factor = unit === '' ? 1 : SIZE_UNITS[unit];
  if (factor === undefined) return { error: `has an unknown unit "${rawUnit}"; ${SIZE_HINT}` };
  const value = Number(num) * factor;
  if (!Number.isSafeInteger(value)) return { error: `is not a whole number of bytes; ${SIZE_HINT}` };
  return { value };
}

/** Formats bytes with the largest binary unit that divides them evenly ("16MiB", "1500B"). */
export function formatSize(bytes: number): string {
  for (const [unit, factor] of [
    ['TiB', 2 ** 40],
    ['GiB', 2 ** 30],
    ['MiB', 2 ** 20],
    ['KiB', 2 ** 10],
  ] as const) {
    if (bytes >= factor && bytes % factor === 0) return `${bytes / factor}${unit}`;
  }
  return `${bytes}B`;
}

const DURATION_UNITS: Readonly<Record<string, number>> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000 };
const DURATION_HINT = 'use seconds (e.g. 30) or a number with a unit: 250ms, 30s, 5m, 1h (or combined, 1m30s)';

/**
 * Parses a duration into milliseconds: a non-negative integer (seconds) or
 * one or more number+unit pairs ("250ms", "30s", "1h30m").
 */
export function parseDuration(input: unknown): UnitResult {
  if (typeof input === 'number') {
    return Number.isSafeInteger(input) && input >= 0
      ? { value: input * 1000 }
      : { error: `is not a whole number of seconds; ${DURATION_HINT}` };
  }
  if (typeof input !== 'string') return { error: `is not a duration; ${DURATION_HINT}` };
  const text = input.trim().toLowerCase();
  if (/^\d+$/.test(text)) return { value: Number(text) * 1000 };
  if (!/^(?:\d+(?:\.\d+)?(?:ms|s|m|h))+$/.test(text)) return { error: `is not a duration; ${DURATION_HINT}` };
  let ms = 0;
  for (const m of text.matchAll(/(\d+(?:\.\d+)?)(ms|s|m|h)/g)) {
    ms += Number(m[1]) * (DURATION_UNITS[m[2] ?? ''] ?? Number.NaN);
  }
  if (!Number.isSafeInteger(ms)) return { error: `is not a whole number of milliseconds; ${DURATION_HINT}` };
  return { value: ms };
}

/** Formats milliseconds as the largest unit that divides them evenly ("0s", "30s", "250ms", "5m"). */
export function formatDuration(ms: number): string {
  if (ms === 0) return '0s';
  for (const [unit, factor] of [
    ['h', 3_600_000],
    ['m', 60_000],
    ['s', 1000],
  ] as const) {
    if (ms % factor === 0) return `${ms / factor}${unit}`;
  }
  return `${ms}ms`;
}
