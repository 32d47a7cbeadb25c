/**
 * SigV4 without hashing the payload, where nothing is lost by it: over TLS, on requests that carry
 * a CRC32 of their body (s3.requestChecksum "when_supported").
 *
 * The SDK signs the SHA-256 of every in-memory body, so each uploaded part is hashed once for the
 * signature and once more for its CRC32 checksum. Over HTTPS the signature's hash adds nothing:
 * TLS already keeps the bytes from being changed on the way, and S3 checks the CRC32 header (itself
 * signed) against the body it stores, so a corrupted part is still refused. Marking such requests
 * `x-amz-content-sha256: UNSIGNED-PAYLOAD` (as the AWS CLI does for S3 over HTTPS) saves the
 * SHA-256 pass, about a tenth of the server's CPU on a big upload. Plain HTTP keeps the signed hash:
 * there it is the only protection the body has against being changed in transit; so do requests
 * without a CRC32 (the default "when_required" sends none on parts).
 */
import type { S3Client } from '@aws-sdk/client-s3';

const SHA256_HEADER = 'x-amz-content-sha256';

interface RequestShape {
  protocol?: string;
  headers?: Record<string, string>;
  body?: unknown;
}

/** Whether a request may be signed with UNSIGNED-PAYLOAD (exported for tests). */
export function mayLeavePayloadUnsigned(request: RequestShape): boolean {
  if (request.protocol !== 'https:' && request.protocol !== 'https') return false;
  if (!ArrayBuffer.isView(request.body) && typeof request.body !== 'string') return false;
  const names = Object.keys(request.headers ?? {}).map((name) => name.toLowerCase());
  return !names.includes(SHA256_HEADER) && names.includes('x-amz-checksum-crc32');
}

/** Adds the middleware to `client` (call only when requests carry CRC32 checksums). */
export function unsignedPayloadOverTls(client: S3Client): void {
  type Args = { request: unknown };
  const middleware = (next: (args: Args) => Promise<unknown>) => async (args: Args) => {
    const request = args.request as RequestShape;
    if (mayLeavePayloadUnsigned(request)) request.headers![SHA256_HEADER] = 'UNSIGNED-PAYLOAD';
    return next(args);
  };
  client.middlewareStack.addRelativeTo(
    middleware as unknown as Parameters<S3Client['middlewareStack']['addRelativeTo']>[0],
    { name: 's3sftpUnsignedPayloadOverTls', relation: 'before', toMiddleware: 'httpSigningMiddleware', override: true },
  );
}
