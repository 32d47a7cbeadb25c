/**
 * Scrapes a /metrics endpoint over HTTP and reads the Prometheus text
 * exposition format the way Prometheus does, so tests check what an operator's
 * monitoring would see rather than prom-client's internals.
 */

/** One sample line: `name{label="value",...} value`. */
export interface Sample {
  name: string;
  labels: Record<string, string>;
  value: number;
}

/** The samples of one scrape, with the metric types from the # TYPE lines. */
export class Scrape {
  readonly samples: Sample[];
  readonly types: Map<string, string>;

  constructor(samples: Sample[], types: Map<string, string>) {
    this.samples = samples;
    this.types = types;
  }

  /** The sum of every sample named `name` whose labels include `labels` (0 when there is none). */
  value(name: string, labels: Record<string, string> = {}): number {
    return this.matching(name, labels).reduce((sum, s) => sum + s.value, 0);
  }

  /** Whether any sample named `name` exists. */
  has(name: string): boolean {
    return this.samples.some((s) => s.name === name);
  }

  matching(name: string, labels: Record<string, string> = {}): Sample[] {
    return this.samples.filter((s) => s.name === name && Object.entries(labels).every(([k, v]) => s.labels[k] === v));
  }
}

const SAMPLE = /^([A-Za-z_:][A-Za-z0-9_:]*)(?:\{(.*)\})?\s+(\S+)(?:\s+-?\d+)?$/;
const LABEL = /([A-Za-z_][A-Za-z0-9_]*)="((?:[^"\\]|\\.)*)"\s*,?\s*/gy;

/** Parses the text format (version 0.0.4). Throws on a line it cannot read. */
export function parsePrometheusText(text: string): Scrape {
  const samples: Sample[] = [];
  const types = new Map<string, string>();
  for (const raw of text.split('\n')) {
    const line = raw.trim();
    if (line === '') continue;
    if (line.startsWith('#')) {
      const type = /^#\s*TYPE\s+(\S+)\s+(\S+)/.exec(line);
      if (type) types.set(type[1] ?? '', type[2] ?? '');
      continue;
    }
    const m = SAMPLE.exec(line);
    if (!m) throw new Error(`cannot parse metrics line ${JSON.stringify(line)}`);
    const labels: Record<string, string> = {};
    const body = m[2] ?? '';
    LABEL.lastIndex = 0;
    let consumed = 0;
    for (let l = LABEL.exec(body); l; l = LABEL.exec(body)) {
      labels[l[1] ?? ''] = (l[2] ?? '').replace(/\\(.)/g, (_, c: string) => (c === 'n' ? '\n' : c));
      consumed = LABEL.lastIndex;
    }
    if (consumed !== body.length) throw new Error(`cannot parse labels in ${JSON.stringify(line)}`);
    // Like Go's ParseFloat, which Prometheus uses: NaN and Inf in any case.
    const v = (m[3] ?? '').toLowerCase();
    const value = v === '+inf' || v === 'inf' ? Infinity : v === '-inf' ? -Infinity : Number(v);
    if (Number.isNaN(value) && v !== 'nan') throw new Error(`bad value in ${JSON.stringify(line)}`);
    samples.push({ name: m[1] ?? '', labels, value });
  }
  return new Scrape(samples, types);
}

/** GET `url` with a time limit; the status and body. */
export async function httpGet(url: string, timeoutMs = 10_000): Promise<{ status: number; body: string; contentType: string }> {
  const res = await fetch(url, { signal: AbortSignal.timeout(timeoutMs) });
  return { status: res.status, body: await res.text(), contentType: res.headers.get('content-type') ?? '' };
}

/** Scrapes http://127.0.0.1:PORT/metrics. */
export async function scrape(port: number): Promise<Scrape> {
  const res = await httpGet(`http://127.0.0.1:${port}/metrics`);
  if (res.status !== 200) throw new Error(`/metrics answered ${res.status}: ${res.body}`);
  if (!res.contentType.startsWith('text/plain')) throw new Error(`/metrics content-type ${res.contentType}`);
  return parsePrometheusText(res.body);
}
