/**
 * Server-side encryption: the one place that turns a user's effective SSE
 * settings into SDK input fields, per command kind. Many company buckets
 * refuse a PutObject or CreateMultipartUpload without
 * x-amz-server-side-encryption (often naming a KMS key), and with SSE-C
 * every request that touches an object's bytes (GET, HEAD, each part, each
 * copy source) must carry the customer key. Rather than trusting every call
 * site to remember, `withEncryption` wraps the client so each command gets
 * the fields of its kind on its way out; no call site can forget one.
 */
import { createHash } from 'node:crypto';
import {
  CompleteMultipartUploadCommand,
  CopyObjectCommand,
  CreateMultipartUploadCommand,
  GetObjectCommand,
  HeadObjectCommand,
  PutObjectCommand,
  type S3Client,
  UploadPartCommand,
  UploadPartCopyCommand,
} from '@aws-sdk/client-s3';
import type { SseMode } from '../../config/sse.ts';

import { parseCustomerKey } from '../../config/sse.ts';

export { parseCustomerKey, SSE_MODES, type SseMode, sseProblems } from '../../config/sse.ts';

/** The effective settings of one user (the server's, overridden field by field by spec.s3.sse). */
export interface SseSettings {
  mode: SseMode;
  /** KMS key id, ARN or alias for aws:kms and aws:kms:dsse; "" for the account's AWS-managed key. */
  kmsKeyId: string;
  /** S3 Bucket Keys (fewer KMS calls); only with aws:kms. */
  bucketKeyEnabled: boolean;
  /** SSE-C: the 32-byte AES-256 key; S3 stores only its MD5 and the caller must send it on every access. */
  customerKey?: Buffer;
  /**
   * Set when the settings cannot be honoured (a user's key file unreadable): every request is
   * refused rather than sent unencrypted or with the wrong key.
   */
  unusable?: string;
}

/** No encryption headers at all. */
export const NO_SSE: SseSettings = Object.freeze({ mode: 'none', kmsKeyId: '', bucketKeyEnabled: false });

/** What a command does with an object, which decides the fields it carries. */
export type SseCommandKind =
  | 'PutObject'
  | 'CreateMultipartUpload'
  | 'CopyObject'
  | 'UploadPart'
  | 'UploadPartCopy'
  | 'CompleteMultipartUpload'
  | 'GetObject'
  | 'HeadObject';

/**
 * The SDK input fields for one command kind. Creating an object (PutObject,
 * CreateMultipartUpload, CopyObject's target) carries the mode or the
 * customer key; every access to SSE-C bytes carries the key; a copy from an
 * SSE-C source also carries it as the copy-source key (a user's objects all
 * use the same key, so source and target share it).
 */
export function sseFields(sse: SseSettings, kind: SseCommandKind): Record<string, string | boolean> {
  const fields: Record<string, string | boolean> = {};
  const creates = kind === 'PutObject' || kind === 'CreateMultipartUpload' || kind === 'CopyObject';
  if (sse.customerKey) {
    const key = sse.customerKey.toString('base64');
    const md5 = createHash('md5').update(sse.customerKey).digest('base64');
    Object.assign(fields, { SSECustomerAlgorithm: 'AES256', SSECustomerKey: key, SSECustomerKeyMD5: md5 });
    if (kind === 'CopyObject' || kind === 'UploadPartCopy') {
      Object.assign(fields, {
        CopySourceSSECustomerAlgorithm: 'AES256',
        CopySourceSSECustomerKey: key,
        CopySourceSSECustomerKeyMD5: md5,
      });
    }
    return fields;
  }
  if (!creates || sse.mode === 'none') return fields;
  fields.ServerSideEncryption = sse.mode;
  if (sse.mode !== 'AES256' && sse.kmsKeyId !== '') fields.SSEKMSKeyId = sse.kmsKeyId;
  if (sse.mode === 'aws:kms' && sse.bucketKeyEnabled) fields.BucketKeyEnabled = true;
  return fields;
}

const KINDS: [abstract new (...args: never[]) => unknown, SseCommandKind][] = [
  [PutObjectCommand, 'PutObject'],
  [CreateMultipartUploadCommand, 'CreateMultipartUpload'],
  [CopyObjectCommand, 'CopyObject'],
  [UploadPartCommand, 'UploadPart'],
  [UploadPartCopyCommand, 'UploadPartCopy'],
  [CompleteMultipartUploadCommand, 'CompleteMultipartUpload'],
  [GetObjectCommand, 'GetObject'],
  [HeadObjectCommand, 'HeadObject'],
];

/** The kind of a command, or undefined for commands that carry no encryption fields (list, delete...). */
export function commandKind(command: unknown): SseCommandKind | undefined {
  for (const [type, kind] of KINDS) if (command instanceof type) return kind;
  return undefined;
}

/**
 * A view of `client` whose send() adds the encryption fields of each
 * command's kind to its input. The client itself stays shared (one per role,
 * region and endpoint); only this view knows the user's settings.
 */
export function withEncryption(client: S3Client, sse: SseSettings | undefined): S3Client {
  if (!sse || (sse.mode === 'none' && !sse.customerKey && !sse.unusable)) return client;
  const send = (command: { input: object }, ...rest: unknown[]) => {
    if (sse.unusable) return Promise.reject(new Error(sse.unusable));
    const kind = commandKind(command);
    if (kind) Object.assign(command.input, sseFields(sse, kind));
    return (client.send as (...args: unknown[]) => unknown)(command, ...rest);
  };
  return new Proxy(client, {
    get(target, property, receiver) {
      if (property === 'send') return send;
      const value = Reflect.get(target, property, receiver) as unknown;
      return typeof value === 'function' ? (value as (...a: unknown[]) => unknown).bind(target) : value;
    },
  });
}

/**
 * A user's effective settings: the server's, overridden field by field by spec.s3.sse. A
 * customer key (SSE-C) of the user's replaces the server's mode, since S3 refuses both on one
 * object; a server-wide customer key applies unless the user names a mode of their own.
 */
export function effectiveSse(
  server: SseSettings,
  user: { mode?: SseMode; kmsKeyId?: string; bucketKeyEnabled?: boolean; customerKeyFile?: string; customerKey?: Buffer } | undefined,
  readKeyFile: (path: string) => Buffer,
): SseSettings {
  if (!user) return server;
  let customerKey = user.customerKey;
  if (!customerKey && user.customerKeyFile) {
    let parsed: { key: Buffer } | { error: string };
    try {
      parsed = parseCustomerKey(readKeyFile(user.customerKeyFile), `spec.s3.sse.customerKeyFile ${user.customerKeyFile}`);
    } catch (err) {
      parsed = { error: `spec.s3.sse.customerKeyFile ${user.customerKeyFile} cannot be read (${(err as NodeJS.ErrnoException).code ?? 'error'})` };
    }
    if ('error' in parsed) return { ...NO_SSE, unusable: parsed.error };
    customerKey = parsed.key;
  }
  if (customerKey) return { mode: 'none', kmsKeyId: '', bucketKeyEnabled: false, customerKey };
  const mode = user.mode ?? server.mode;
  const settings: SseSettings = {
    mode,
    kmsKeyId: user.kmsKeyId ?? (user.mode && user.mode !== server.mode ? '' : server.kmsKeyId),
    bucketKeyEnabled: user.bucketKeyEnabled ?? (mode === 'aws:kms' ? server.bucketKeyEnabled : false),
  };
  if (server.customerKey && !user.mode) settings.customerKey = server.customerKey;
  return settings;
}

/** The server's settings from its config, with the SSE-C key file read (at start). */
export function serverSse(
  config: { mode: SseMode; kmsKeyId: string; bucketKeyEnabled: boolean; customerKeyFile: string } | undefined,
  readKeyFile: (path: string) => Buffer,
): SseSettings {
  if (!config) return NO_SSE;
  const settings: SseSettings = { mode: config.mode, kmsKeyId: config.kmsKeyId, bucketKeyEnabled: config.bucketKeyEnabled };
  if (config.customerKeyFile === '') return settings;
  const parsed = parseCustomerKey(readKeyFile(config.customerKeyFile), `s3.sse.customerKeyFile ${config.customerKeyFile}`);
  if ('error' in parsed) throw new Error(parsed.error);
  return { ...settings, customerKey: parsed.key };
}
