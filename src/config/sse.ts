/**
 * Checks of server-side encryption settings, shared by the server's s3.sse.* keys and by
 * SftpUser spec.s3.sse (storage/s3/encryption.ts turns valid settings into request fields).
 */

/** x-amz-server-side-encryption: none sends no header (the bucket's default encryption applies). */
export const SSE_MODES = ['none', 'AES256', 'aws:kms', 'aws:kms:dsse'] as const;
export type SseMode = (typeof SSE_MODES)[number];

/**
 * Why these settings cannot work, one sentence per problem naming the fix;
 * empty when they can. `where` prefixes each field name (s3.sse. or spec.s3.sse.).
 */
export function sseProblems(sse: { mode: string; kmsKeyId: string; bucketKeyEnabled: boolean; customerKey?: Buffer | undefined; hasCustomerKey?: boolean }, where: string): string[] {
  const problems: string[] = [];
  if (!(SSE_MODES as readonly string[]).includes(sse.mode)) {
    problems.push(`${where}mode: ${JSON.stringify(sse.mode)} is not a mode; use ${SSE_MODES.join(', ')}`);
  }
  if (sse.kmsKeyId !== '' && !sse.mode.startsWith('aws:kms')) {
    problems.push(`${where}kmsKeyId: is set, but only aws:kms and aws:kms:dsse use a KMS key; set ${where}mode to one of them or remove kmsKeyId`);
  }
  if (sse.kmsKeyId !== '' && !/^[\w:/+=,.@-]{1,2048}$/.test(sse.kmsKeyId)) {
    problems.push(`${where}kmsKeyId: is not a KMS key id, ARN or alias (e.g. alias/s3sftp or arn:aws:kms:eu-west-1:111122223333:key/...)`);
  }
  if (sse.bucketKeyEnabled && sse.mode !== 'aws:kms') {
    problems.push(`${where}bucketKeyEnabled: S3 Bucket Keys apply only to aws:kms; set ${where}mode: aws:kms or remove bucketKeyEnabled`);
  }
  const customer = sse.customerKey !== undefined || sse.hasCustomerKey === true;
  if (customer && sse.mode !== 'none') {
    problems.push(`${where}mode: SSE-C (a customer key) cannot be combined with ${sse.mode}; S3 refuses both on one object, so leave mode at none with a customer key`);
  }
  return problems;
}

/**
 * The 32-byte key from the text of a key file or Secret: base64 of 32 bytes
 * (what `openssl rand -base64 32` prints), surrounding whitespace ignored.
 * An error message instead, never echoing the text (it is a secret).
 */
export function parseCustomerKey(text: string | Buffer, what: string): { key: Buffer } | { error: string } {
  const trimmed = (typeof text === 'string' ? text : text.toString('utf8')).trim();
  if (!/^[A-Za-z0-9+/]+={0,2}$/.test(trimmed)) {
    return { error: `${what} is not base64; store a 32-byte key as base64, e.g. the output of \`openssl rand -base64 32\`` };
  }
  const key = Buffer.from(trimmed, 'base64');
  if (key.length !== 32) {
    return { error: `${what} holds ${key.length} bytes; SSE-C needs exactly 32 (AES-256), e.g. \`openssl rand -base64 32\`` };
  }
  return { key };
}

