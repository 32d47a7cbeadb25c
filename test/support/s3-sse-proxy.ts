/**
 * A proxy in front of the test S3 server (Swift) that records the server-side encryption headers
 * of every request, by S3 operation, and removes them before forwarding.
 *
 * Why it removes them: Swift's s3api answers 501 NotImplemented to x-amz-server-side-encryption
 * (unless Swift's own encryption middleware is on, and then only AES256), so the data path would
 * stop at the first upload. The headers are part of the SigV4 signature, so the proxy signs the
 * request again, without them, with the test credentials; Swift then verifies a valid signature.
 * The record is what s3sftp sent; the data stored in Swift is not encrypted, which is fine: the
 * tests check which headers each request kind carries, and that the data path works with them.
 */
import { createHash, createHmac } from 'node:crypto';
import type { IncomingHttpHeaders } from 'node:http';
import { SignatureV4 } from '@smithy/signature-v4';
import { startHttpProxy } from './proxy-core.ts';
import { classifyS3Request, type S3RequestKind } from './s3-latency-proxy.ts';

export interface SseRecord {
  kind: S3RequestKind;
  method: string;
  path: string;
  /** The x-amz-server-side-encryption* and x-amz-copy-source-server-side-encryption* headers sent, lower-case names. */
  sse: Record<string, string>;
  status: number;
}

export interface SseProxy {
  endpoint: string;
  readonly requests: readonly SseRecord[];
  close(): Promise<void>;
}

const SSE_HEADER = /^x-amz-(copy-source-)?server-side-encryption/;

/** node:crypto behind the hash interface SignatureV4 wants. */
class Sha256 {
  #hash;
  constructor(secret?: string | ArrayBuffer | ArrayBufferView) {
    this.#hash = secret === undefined ? createHash('sha256') : createHmac('sha256', bytes(secret));
  }
  update(data: string | ArrayBuffer | ArrayBufferView): void {
    this.#hash.update(bytes(data));
  }
  async digest(): Promise<Uint8Array> {
    return new Uint8Array(this.#hash.digest());
  }
}

function bytes(data: string | ArrayBuffer | ArrayBufferView): string | Uint8Array {
  if (typeof data === 'string') return data;
  if (data instanceof ArrayBuffer) return new Uint8Array(data);
  return new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
}

/** Starts the proxy in front of `upstream` (the test S3 endpoint); it signs again with `credentials`. */
export async function startSseProxy(
  upstream: string,
  credentials: { accessKeyId: string; secretAccessKey: string; region: string },
): Promise<SseProxy> {
  const requests: SseRecord[] = [];
  const signer = new SignatureV4({
    credentials: { accessKeyId: credentials.accessKeyId, secretAccessKey: credentials.secretAccessKey },
    region: credentials.region,
    service: 's3',
    sha256: Sha256,
    // S3 signs the path as sent (already encoded once), as the SDK's S3 signer does.
    uriEscapePath: false,
    applyChecksum: false,
  });
  const proxy = await startHttpProxy({
    upstream,
    async handle(req, res, { forward, relay }) {
      const sse: Record<string, string> = {};
      const headers: IncomingHttpHeaders = {};
      for (const [name, value] of Object.entries(req.headers)) {
        if (SSE_HEADER.test(name)) sse[name] = String(value);
        else headers[name] = value;
      }
      const record: SseRecord = { kind: classifyS3Request(req.method ?? '', req.url ?? '/', req.headers), method: req.method ?? '', path: req.url ?? '', sse, status: 0 };
      requests.push(record);
      const answer = await forward(req, await resign(signer, req.method ?? 'GET', req.url ?? '/', headers));
      record.status = answer.statusCode ?? 0;
      relay(answer, res);
    },
  });
  return { endpoint: proxy.endpoint, requests, close: proxy.close };
}

/** The headers signed again without the removed ones; the payload hash header is kept as sent. */
async function resign(signer: SignatureV4, method: string, target: string, headers: IncomingHttpHeaders): Promise<Record<string, string>> {
  const url = new URL(target, 'http://s3.invalid');
  const query: Record<string, string | string[]> = {};
  for (const [k, v] of url.searchParams) {
    const prior = query[k];
    query[k] = prior === undefined ? v : [...(Array.isArray(prior) ? prior : [prior]), v];
  }
  const plain: Record<string, string> = {};
  for (const [name, value] of Object.entries(headers)) {
    if (value === undefined || name === 'authorization' || name === 'x-amz-date' || name === 'connection') continue;
    plain[name] = Array.isArray(value) ? value.join(',') : value;
  }
  const signed = await signer.sign({
    method,
    protocol: 'http:',
    hostname: (plain.host ?? '').split(':')[0] ?? '',
    path: url.pathname,
    query,
    headers: plain,
  });
  return signed.headers as Record<string, string>;
}
