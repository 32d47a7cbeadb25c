/**
 * Checks of S3 settings that the server's configuration (s3.*) and SftpUser resources
 * (spec.s3.*) share, so that a value is valid in both places or in neither, with the same words.
 * Each returns undefined for a valid value, else a problem phrased to follow the quoted value:
 * `<key>: "<value>" <problem>`. The SftpUser CRD (crds/sftpusers.s3sftp.io.yaml) carries the same
 * rules as patterns; test/unit/crd.test.ts checks that they agree.
 */

/** An IAM role ARN in any partition; the account may be empty, as S3-compatible stores with STS write it (arn:minio:iam:::role/x). */
export const ROLE_ARN_RE = /^arn:[a-z][a-z0-9-]*:iam::([0-9]{12})?:role\/[A-Za-z0-9+=,.@_/-]+$/;

export function bucketNameProblem(s: string): string | undefined {
  if (/^s3:\/\//i.test(s)) return 'is a URL; write only the bucket name, e.g. my-bucket';
  if (s.includes('/')) return 'contains "/"; write only the bucket name and put the path in a keyPrefix';
  if (/\s/.test(s)) return 'contains whitespace; bucket names never do';
  return undefined;
}

export function roleArnProblem(s: string): string | undefined {
  if (s.length <= 2048 && ROLE_ARN_RE.test(s)) return undefined;
  return 'is not an IAM role ARN; use e.g. arn:aws:iam::123456789012:role/sftp-alice';
}

export function storageClassProblem(s: string): string | undefined {
  if (s.length <= 64 && /^[A-Z0-9_]+$/.test(s)) return undefined;
  return 'is not a storage class name; use upper case like STANDARD_IA';
}

export function regionProblem(s: string): string | undefined {
  if (s.length <= 64 && /^[A-Za-z0-9._-]+$/.test(s)) return undefined;
  return 'is not a region name; use letters, digits, ".", "_" or "-", e.g. eu-west-1';
}

/** http(s)://host[:port][/path], no query or fragment, no spaces or control characters. */
const ENDPOINT_RE = /^https?:\/\/[^/?#\u0000-\u0020\u007f]+(\/[^\u0000-\u0020\u007f]*)?$/;

export function endpointProblem(s: string): string | undefined {
  const hint = 'use an http:// or https:// URL such as http://minio:9000';
  if (/^[a-z][a-z0-9+.-]*:\/\//i.test(s) && !/^https?:\/\//.test(s)) return `must start with http:// or https://; ${hint}`;
  if (s.length > 2048 || !ENDPOINT_RE.test(s) || !URL.canParse(s)) {
    return /^[\w.-]+:\d+$/.test(s) ? `must start with http:// or https://; ${hint}` : `is not a URL; ${hint}`;
  }
  return undefined;
}
