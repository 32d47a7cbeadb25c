/**
 * What one small S3 request costs this process in CPU: s3sftp's S3Client (createS3Client, the
 * server's defaults) against Node's http with the SDK's own SigV4 signer and nothing else, on a local
 * Swift, loopback only. HeadObject, PutObject of 4 KiB and DeleteObject, BENCH_REQUESTS (500) each,
 * one request at a time, the two clients alternated over BENCH_ROUNDS (3) rounds; medians printed.
 *
 *   node bench/sdk-overhead.ts
 *
 * The difference is the SDK's client stack (middleware, serde, endpoint rules, retries), which every
 * small-file operation pays once per request (docs/performance.md, "Server CPU per small file").
 */
import { request, Agent, type IncomingMessage } from 'node:http';
import { createHash, createHmac, type BinaryLike } from 'node:crypto';
import { SignatureV4 } from '@smithy/signature-v4';
import { DeleteObjectCommand, HeadObjectCommand, PutObjectCommand } from '@aws-sdk/client-s3';
import { startSwift } from '../dev/swift.ts';
import { createBucket, s3Env } from '../test/support/harness.ts';
import { loadConfig } from '../src/config/load.ts';
import { createS3Client } from '../src/storage/s3/client.ts';
import { median, fmt, markdownTable } from './lib/stats.ts';

const REQUESTS = Number(process.env.BENCH_REQUESTS ?? 500);
const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 3);
const EMPTY_SHA256 = createHash('sha256').digest('hex');

type SourceData = string | ArrayBuffer | ArrayBufferView;
const bytes = (data: SourceData): BinaryLike =>
  typeof data === 'string' ? data : ArrayBuffer.isView(data) ? new Uint8Array(data.buffer, data.byteOffset, data.byteLength) : new Uint8Array(data);

/** The hash the signer wants, from node:crypto. */
class NodeSha256 {
  readonly #hash;
  constructor(secret?: SourceData) {
    this.#hash = secret === undefined ? createHash('sha256') : createHmac('sha256', bytes(secret));
  }
  update(data: SourceData): void {
    this.#hash.update(bytes(data));
  }
  async digest(): Promise<Uint8Array> {
    return this.#hash.digest();
  }
}

type Op = 'HeadObject' | 'PutObject 4 KiB' | 'DeleteObject';
const OPS: Op[] = ['HeadObject', 'PutObject 4 KiB', 'DeleteObject'];

const s3 = await startSwift();
try {
  const bucket = await createBucket(s3);
  const config = loadConfig({ env: s3Env(s3, bucket) });
  const sdk = createS3Client(config.s3);
  const endpoint = new URL(s3.endpoint);
  const signer = new SignatureV4({
    service: 's3',
    region: s3.region,
    credentials: { accessKeyId: s3.accessKeyId, secretAccessKey: s3.secretAccessKey },
    sha256: NodeSha256,
    uriEscapePath: false,
  });
  const agent = new Agent({ keepAlive: true });
  const body = Buffer.alloc(4096, 7);

  const viaSdk = async (op: Op, key: string): Promise<void> => {
    if (op === 'HeadObject') await sdk.send(new HeadObjectCommand({ Bucket: bucket, Key: key }));
    else if (op === 'PutObject 4 KiB') await sdk.send(new PutObjectCommand({ Bucket: bucket, Key: key, Body: body }));
    else await sdk.send(new DeleteObjectCommand({ Bucket: bucket, Key: key }));
  };
  const viaHttp = async (op: Op, key: string): Promise<void> => {
    const method = op === 'HeadObject' ? 'HEAD' : op === 'PutObject 4 KiB' ? 'PUT' : 'DELETE';
    const payload = method === 'PUT' ? body : undefined;
    const path = `/${bucket}/${key}`;
    const headers: Record<string, string> = {
      host: endpoint.host,
      'x-amz-content-sha256': payload ? createHash('sha256').update(payload).digest('hex') : EMPTY_SHA256,
      ...(payload ? { 'content-length': String(payload.length) } : {}),
    };
    const signed = await signer.sign({ method, protocol: 'http:', hostname: endpoint.hostname, path, headers, query: {} });
    const res = await new Promise<IncomingMessage>((resolve, reject) => {
      const req = request({ agent, host: endpoint.hostname, port: endpoint.port, method, path, headers: signed.headers }, resolve);
      req.on('error', reject);
      req.end(payload);
    });
    res.resume();
    await new Promise((resolve) => res.on('end', resolve));
    if ((res.statusCode ?? 500) >= 300) throw new Error(`${method} ${path}: HTTP ${res.statusCode}`);
  };

  const clients = { 's3sftp S3Client': viaSdk, 'node:http + SigV4 signer': viaHttp };
  const cpuMs = new Map<string, number[]>();
  for (let round = 0; round < ROUNDS; round++) {
    for (const [name, send] of Object.entries(clients)) {
      // Objects to HEAD and DELETE exist: each round PUTs them first, with the client under test.
      for (const op of ['PutObject 4 KiB', 'HeadObject', 'DeleteObject'] as Op[]) {
        const before = process.cpuUsage();
        for (let i = 0; i < REQUESTS; i++) await send(op, `sdk-overhead/${i}`);
        const used = process.cpuUsage(before);
        const key = `${name}|${op}`;
        (cpuMs.get(key) ?? cpuMs.set(key, []).get(key)!).push((used.user + used.system) / 1000 / REQUESTS);
      }
    }
    process.stderr.write(`sdk-overhead: round ${round + 1} of ${ROUNDS} done\n`);
  }
  const cell = (name: string, op: Op) => median(cpuMs.get(`${name}|${op}`)!);
  console.log(
    markdownTable(
      ['CPU ms per request (median of rounds)', ...OPS],
      [
        ...Object.keys(clients).map((name) => [name, ...OPS.map((op) => fmt(cell(name, op), 2))]),
        ['the SDK stack costs', ...OPS.map((op) => fmt(cell('s3sftp S3Client', op) - cell('node:http + SigV4 signer', op), 2))],
      ],
    ),
  );
  agent.destroy();
  sdk.destroy();
} finally {
  await s3.stop();
}
