/**
 * Counts what a key prefix holds (bytes and objects) with a flat
 * ListObjectsV2 (no delimiter): one request per 1000 objects, however deep
 * the tree. Directory markers (keys ending in "/") are not files.
 */
import { ListObjectsV2Command, type S3Client } from '@aws-sdk/client-s3';
import type { Usage } from '../quota.ts';
import { toStorageError } from './errors.ts';
import { decodeKey } from './lister.ts';
import { isReservedKey } from './reserved-keys.ts';

export async function scanPrefixUsage(client: S3Client, bucket: string, prefix: string): Promise<Usage> {
  const usage: Usage = { bytes: 0, files: 0 };
  let token: string | undefined;
  do {
    let page;
    try {
      page = await client.send(new ListObjectsV2Command({ Bucket: bucket, Prefix: prefix, ContinuationToken: token, EncodingType: 'url' }));
    } catch (err) {
      throw toStorageError(err, `count usage of ${prefix || 'the bucket'}`);
    }
    for (const object of page.Contents ?? []) {
      // The server's own keys (a bucket-root user's prefix holds them) are not the user's files.
      if (object.Key === undefined || object.Key.endsWith('/') || isReservedKey(decodeKey(object.Key))) continue;
      usage.bytes += object.Size ?? 0;
      usage.files++;
    }
    token = page.IsTruncated ? page.NextContinuationToken : undefined;
  } while (token);
  return usage;
}
