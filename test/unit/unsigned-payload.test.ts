/**
 * Which requests skip the SigV4 payload hash (src/storage/s3/unsigned-payload.ts): only HTTPS
 * requests that carry a CRC32 of their body, i.e. with s3.requestChecksum "when_supported". Checked
 * on the headers a real S3Client hands its request handler.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { Readable } from 'node:stream';
import { UploadPartCommand } from '@aws-sdk/client-s3';
import { createS3Client } from '../../src/storage/s3/client.ts';
import type { S3Config } from '../../src/config/types.ts';

type Sent = { headers: Record<string, string> };

/** The headers of one UploadPart sent by createS3Client's client for this endpoint and checksum mode. */
async function uploadPartHeaders(endpoint: string, requestChecksum: S3Config['requestChecksum'], body: Buffer): Promise<Record<string, string>> {
  const sent: Sent[] = [];
  const requestHandler = {
    handle: async (request: Sent) => {
      sent.push(request);
      return { response: { statusCode: 200, headers: { etag: '"e"' }, body: Readable.from([]) } };
    },
  };
  const cfg = { region: 'us-east-1', endpoint, forcePathStyle: true, requestChecksum, upload: { concurrency: 1 }, download: { concurrency: 1 } } as unknown as S3Config;
  const client = createS3Client(cfg, {
    credentials: { accessKeyId: 'AKIDEXAMPLE', secretAccessKey: 'secret' },
    requestHandler: requestHandler as never,
  });
  await client.send(new UploadPartCommand({ Bucket: 'b', Key: 'k', UploadId: 'u', PartNumber: 1, Body: body, ContentLength: body.length }));
  client.destroy();
  assert.equal(sent.length, 1);
  return Object.fromEntries(Object.entries(sent[0]!.headers).map(([k, v]) => [k.toLowerCase(), v]));
}

const body = Buffer.from('part data');
const sha256 = createHash('sha256').update(body).digest('hex');

test('over HTTPS with CRC32 checksums the payload is not hashed for the signature; the CRC32 is sent and signed', async () => {
  const headers = await uploadPartHeaders('https://s3.example.test', 'when_supported', body);
  assert.equal(headers['x-amz-content-sha256'], 'UNSIGNED-PAYLOAD');
  assert.ok(headers['x-amz-checksum-crc32'], 'the body still carries its CRC32');
  assert.match(headers['authorization']!, /SignedHeaders=[^,]*x-amz-checksum-crc32/);
});

test('plain HTTP, or no CRC32 (the default when_required), keeps the signed SHA-256 of the payload', async () => {
  assert.equal((await uploadPartHeaders('http://127.0.0.1:1', 'when_supported', body))['x-amz-content-sha256'], sha256);
  const noCrc = await uploadPartHeaders('https://s3.example.test', 'when_required', body);
  assert.equal(noCrc['x-amz-content-sha256'], sha256);
  assert.equal(noCrc['x-amz-checksum-crc32'], undefined);
});
