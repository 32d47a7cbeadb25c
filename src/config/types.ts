/** The validated, frozen server configuration. See config/load.ts for defaults and env vars. */

export type SetstatMode = 0 | 1 | 2;
export type RenameMode = 0 | 1;
export type ChecksumMode = 'when_required' | 'when_supported';

/** Transfer tuning for one direction. */
export interface TransferConfig {
  /** Bytes per part (upload: the first parts; sizes grow later, see storage/s3/part-size.ts). */
  partSize: number;
  /** Parts in flight at once. */
  concurrency: number;
  /** Time limit for one part request in milliseconds; 0 derives one from the part size. */
  partMaxTimeMs: number;
}

export interface S3Config {
  bucket: string;
  region: string;
  endpoint: string;
  forcePathStyle: boolean;
  storageClass: string;
  acl: string;
  credentials: { accessKeyId: string; secretAccessKey: string; sessionToken: string };
  /** Request checksums: AWS's default is when_supported; some S3-compatible stores need when_required. */
  requestChecksum: ChecksumMode;
  upload: TransferConfig;
  download: TransferConfig;
}

export interface Config {
  /** host:port to listen on for SSH. */
  listen: { host: string; port: number };
  hostKeys: string[];
  dataDir: string;
  setstatMode: SetstatMode;
  renameMode: RenameMode;
  renameMaxObjects: number;
  s3: S3Config;
  users: { directory: string };
  log: { level: 'trace' | 'debug' | 'info' | 'warn' | 'error' | 'fatal' | 'silent' };
}
