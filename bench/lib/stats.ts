/** The pure arithmetic and formatting of the benchmark: medians of rounds, ratios, markdown tables. */

/** The median of the numbers; NaN for none. Rounds that failed are left out by the caller. */
export function median(values: readonly number[]): number {
  const v = values.filter((x) => Number.isFinite(x)).sort((a, b) => a - b);
  if (v.length === 0) return NaN;
  const mid = v.length >> 1;
  return v.length % 2 === 1 ? v[mid]! : (v[mid - 1]! + v[mid]!) / 2;
}

/** Percentile by nearest rank (p in 0..100); NaN for none. */
export function percentile(values: readonly number[], p: number): number {
  const v = values.filter((x) => Number.isFinite(x)).sort((a, b) => a - b);
  if (v.length === 0) return NaN;
  const rank = Math.min(v.length, Math.max(1, Math.ceil((p / 100) * v.length)));
  return v[rank - 1]!;
}

/** A number for a table cell: "–" when unknown, else `digits` decimals (fewer for large values). */
export function fmt(value: number | undefined, digits = 1): string {
  if (value === undefined || !Number.isFinite(value)) return '–';
  if (Math.abs(value) >= 1000) return value.toFixed(0);
  return value.toFixed(digits);
}

/** "1.23×" — how many times `value` is `baseline`; "–" when either is unknown or the baseline is 0. */
export function ratio(value: number | undefined, baseline: number | undefined): string {
  if (value === undefined || baseline === undefined || !Number.isFinite(value) || !Number.isFinite(baseline) || baseline === 0) return '–';
  return `${(value / baseline).toFixed(2)}×`;
}

/** A GitHub-flavoured markdown table; cells are escaped for "|" and newlines. */
export function markdownTable(header: readonly string[], rows: readonly (readonly string[])[]): string {
  const cell = (s: string) => s.replace(/\|/g, '\\|').replace(/\r?\n/g, ' ');
  const line = (cells: readonly string[]) => `| ${cells.map(cell).join(' | ')} |`;
  return [line(header), line(header.map(() => '---')), ...rows.map((r) => line(header.map((_, i) => r[i] ?? '')))].join('\n');
}

/** MB/s (10^6 bytes per second, as the goals are stated) for `bytes` moved in `ms`. */
export function mbps(bytes: number, ms: number): number {
  return ms > 0 ? bytes / 1e6 / (ms / 1000) : NaN;
}
