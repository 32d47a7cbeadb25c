/**
 * A fault-injecting HTTP proxy in front of the test S3 server. Point the
 * server's S3 endpoint at it; the Host header is passed through, so SigV4
 * signatures stay valid. Per request it forwards unchanged or injects one
 * fault, chosen by `plan` (per request) or at random by `rates` from a seeded
 * PRNG, so a failing run can be replayed with the same seed:
 *
 * - `slowdown`: 503 with S3's SlowDown XML body; upstream never sees the request.
 * - `reset-before`: the connection is dropped before the request is forwarded.
 * - `reset-mid`: the request is forwarded (upstream acts on it), then the
 *   connection is dropped halfway through the answer: an ambiguous outcome.
 * - `stall`: the request waits `stallMs` before it is forwarded.
 * - `slow-body`: the answer's body trickles out in small slices.
 * - `truncate`: the answer keeps its Content-Length but only half the body is
 *   sent before the connection is dropped.
 *
 * It also counts retries: a request with the method and URL of an earlier
 * faulted one (the SDK and our own retry loops resend the same URL), with the
 * delay since that fault, so a test can check backoff and jitter.
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import { setTimeout as sleep } from 'node:timers/promises';
import { startHttpProxy, type Forwarder } from './proxy-core.ts';

export const FAULT_KINDS = ['slowdown', 'reset-before', 'reset-mid', 'stall', 'slow-body', 'truncate'] as const;
export type FaultKind = (typeof FAULT_KINDS)[number];

/** What the proxy knows about a request when it decides. */
export interface ProxiedRequest {
  method: string;
  /** Path and query, e.g. /bucket/key?uploadId=...&partNumber=2 */
  url: string;
}

export interface FaultProxyOptions {
  /** Where to forward, e.g. the Swift endpoint http://127.0.0.1:PORT. */
  target: string;
  /** Seed of the PRNG that picks random faults. */
  seed: number;
  /** Probability per request of each fault kind (their sum at most 1). */
  rates?: Partial<Record<FaultKind, number>>;
  /** Per-request choice; when it returns a kind (or null for "none") the rates are not consulted. */
  plan?: (req: ProxiedRequest) => FaultKind | null | undefined;
  /** How long a stalled request waits; 1500 ms by default. */
  stallMs?: number;
}

export interface FaultProxyStats {
  requests: number;
  faults: Record<FaultKind, number>;
  /** Requests that repeat an earlier faulted request (same method and URL). */
  retries: number;
  /** For each retry, milliseconds between the fault and the retry's arrival. */
  retryDelaysMs: number[];
  /** Requests by method + S3 operation shape (e.g. "PUT part", "DELETE upload"), with their answers. */
  byShape: Map<string, { count: number; statuses: Map<number | 'fault', number> }>;
}

export interface FaultProxy {
  endpoint: string;
  stats: FaultProxyStats;
  /** Every request fails with `kind` (S3 is "down") until called again with null. */
  setDown(kind: FaultKind | null): void;
  /** Changes the random rates (e.g. to {} for a quiet phase). */
  setRates(rates: Partial<Record<FaultKind, number>>): void;
  close(): Promise<void>;
}

/** mulberry32: small, fast, good enough to pick faults reproducibly. */
export function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const SLOWDOWN_BODY =
  '<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>SlowDown</Code><Message>Please reduce your request rate.</Message><RequestId>fault-proxy</RequestId></Error>';

/** A coarse name for the S3 operation, for counting without unbounded keys. */
export function shapeOf(req: ProxiedRequest): string {
  const q = new URL(req.url, 'http://x').searchParams;
  const kind = q.has('partNumber') ? 'part' : q.has('uploadId') ? 'upload' : q.has('uploads') ? 'uploads' : q.has('list-type') || req.url.split('?')[0]!.split('/').filter(Boolean).length <= 1 ? 'bucket' : 'object';
  return `${req.method} ${kind}`;
}

/** Starts the proxy in front of `options.target` (the test S3 endpoint). */
export async function startFaultProxy(options: FaultProxyOptions): Promise<FaultProxy> {
  const random = prng(options.seed);
  let rates = options.rates ?? {};
  let down: FaultKind | null = null;
  const stallMs = options.stallMs ?? 1500;
  const faultedAt = new Map<string, number>();
  const stats: FaultProxyStats = {
    requests: 0,
    faults: Object.fromEntries(FAULT_KINDS.map((k) => [k, 0])) as Record<FaultKind, number>,
    retries: 0,
    retryDelaysMs: [],
    byShape: new Map(),
  };

  const choose = (req: ProxiedRequest): FaultKind | null => {
    if (down) return down;
    const planned = options.plan?.(req);
    if (planned !== undefined) return planned;
    let r = random();
    for (const kind of FAULT_KINDS) {
      r -= rates[kind] ?? 0;
      if (r < 0) return kind;
    }
    return null;
  };

  const record = (shape: string, status: number | 'fault') => {
    let entry = stats.byShape.get(shape);
    if (!entry) stats.byShape.set(shape, (entry = { count: 0, statuses: new Map() }));
    entry.count++;
    entry.statuses.set(status, (entry.statuses.get(status) ?? 0) + 1);
  };

  const readAll = async (from: IncomingMessage): Promise<Buffer> => {
    const chunks: Buffer[] = [];
    for await (const chunk of from) chunks.push(chunk as Buffer);
    return Buffer.concat(chunks);
  };

  const handle = async (req: IncomingMessage, res: ServerResponse, { forward, relay, signal }: Forwarder): Promise<void> => {
    stats.requests++;
    const info: ProxiedRequest = { method: req.method ?? '', url: req.url ?? '' };
    const id = `${info.method} ${info.url}`;
    const shape = shapeOf(info);
    const previous = faultedAt.get(id);
    if (previous !== undefined) {
      faultedAt.delete(id);
      stats.retries++;
      stats.retryDelaysMs.push(performance.now() - previous);
    }
    const fault = choose(info);
    if (fault) {
      stats.faults[fault]++;
      faultedAt.set(id, performance.now());
      record(shape, 'fault');
    }
    if (fault === 'slowdown') {
      req.resume();
      await new Promise((resolve) => req.once('end', resolve).once('error', resolve));
      const body = info.method === 'HEAD' ? '' : SLOWDOWN_BODY;
      res.writeHead(503, { 'content-type': 'application/xml', 'content-length': Buffer.byteLength(SLOWDOWN_BODY), 'x-amz-request-id': 'fault-proxy' });
      res.end(body);
      return;
    }
    if (fault === 'reset-before') {
      req.socket.destroy();
      return;
    }
    if (fault === 'stall') await sleep(stallMs, undefined, { signal });
    const answer = await forward(req);
    if (!fault) record(shape, answer.statusCode ?? 0);
    if (fault === 'reset-mid' || fault === 'truncate') {
      const body = await readAll(answer);
      if (body.length < 2) {
        // Nothing to cut: the upstream acted, the client never hears of it.
        req.socket.destroy();
        return;
      }
      res.writeHead(answer.statusCode ?? 502, answer.headers);
      // reset-mid may also drop a chunked answer; truncate keeps Content-Length and sends less.
      res.write(body.subarray(0, Math.floor(body.length / 2)));
      await sleep(5);
      res.socket?.destroy();
      return;
    }
    if (fault !== 'slow-body') {
      relay(answer, res);
      return;
    }
    res.writeHead(answer.statusCode ?? 502, answer.headers);
    for await (const chunk of answer) {
      for (let offset = 0; offset < (chunk as Buffer).length; offset += 16 * 1024) {
        if (!res.write((chunk as Buffer).subarray(offset, offset + 16 * 1024))) {
          await new Promise((resolve) => res.once('drain', resolve).once('close', resolve));
        }
        await sleep(10, undefined, { signal });
      }
    }
    res.end();
  };

  const proxy = await startHttpProxy({ upstream: options.target, handle });
  return {
    endpoint: proxy.endpoint,
    stats,
    setDown(kind) {
      down = kind;
    },
    setRates(next) {
      rates = next;
    },
    close: proxy.close,
  };
}
