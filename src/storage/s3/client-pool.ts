/**
 * The S3 clients of the server: one per (role, region, endpoint), shared by every session of every
 * user with that combination, created on first use and kept until the server stops. All of them
 * share one pair of HTTP agents (with the STS clients), so the socket pool per host stays bounded
 * however many roles there are, and one Identities cache, so a role is assumed once for all its clients.
 */
import { ListObjectsV2Command, type S3Client, type S3ClientConfig } from '@aws-sdk/client-s3';
import type { Logger } from 'pino';
import type { S3Config } from '../../config/types.ts';
import type { AccessCheck, AccessUser, UserAccessChecker } from '../../users/access.ts';
import { createS3Client, httpHandlerOptions } from './client.ts';
import { CredentialsError, Identities, stsRoleAssumer } from './credentials.ts';
import { errorCodeOf, httpStatusOf } from './errors.ts';

export interface ClientPoolOptions {
  config: S3Config;
  log: Logger;
  /** Default: built from config (base credentials, roles through STS). */
  identities?: Identities;
  /** Called once with every client created (request metrics). */
  onClient?: (client: S3Client) => void;
  /** Merged into every client's config last (tests lower retries). */
  clientOverrides?: Partial<S3ClientConfig>;
}

// A status check lists one key; a minute covers STS plus the SDK's retries.
const CHECK_TIMEOUT_MS = 60_000;

/** Also the S3 implementation of the users side's access check. */
export class ClientPool implements UserAccessChecker {
  readonly #o: ClientPoolOptions;
  readonly #identities: Identities;
  readonly #handler: ReturnType<typeof httpHandlerOptions>;
  readonly #clients = new Map<string, S3Client>();
  #destroyed = false;

  constructor(opts: ClientPoolOptions) {
    this.#o = opts;
    this.#handler = httpHandlerOptions(opts.config);
    this.#identities =
      opts.identities ??
      new Identities({
        config: opts.config,
        log: opts.log.child({ component: 'credentials' }),
        assumeRole: stsRoleAssumer({ requestHandler: this.#handler }),
      });
  }

  /** The server's own client: its credentials, s3.region and s3.endpoint (start-up check, janitor). */
  get default(): S3Client {
    return this.#client('', this.#o.config.region, this.#o.config.endpoint);
  }

  /** The client for a user's role, region and endpoint (each falling back to the server's). */
  clientFor(user: AccessUser): S3Client {
    return this.#client(user.s3.roleArn ?? '', user.s3.region || this.#o.config.region, user.s3.endpoint || this.#o.config.endpoint);
  }

  /**
   * The client for a new session of `user`. A user role is resolved now, so the session's first
   * request does not wait for STS, and a refusal is logged once per session as
   * "cannot assume role X for user Y"; the session's requests then fail with permission denied.
   */
  forSession(user: AccessUser, log: Logger): S3Client {
    const client = this.clientFor(user);
    const roleArn = user.s3.roleArn;
    if (roleArn) {
      this.#identities
        .role(roleArn)
        .get()
        .catch((err: unknown) => {
          log.error({ err, roleArn, user: user.username }, `cannot assume role ${roleArn} for user ${user.username}`);
        });
    }
    return client;
  }

  /**
   * Whether `user` can reach their storage: obtains the user's credentials (asking STS again even
   * if it refused a moment ago) and lists one key under the user's keyPrefix, the least a working
   * session needs. Never throws. For the Kubernetes controller's SftpUser status.
   */
  async checkUserAccess(user: AccessUser, opts: { timeoutMs?: number } = {}): Promise<AccessCheck> {
    const who = `user ${user.username}`;
    const roleArn = user.s3.roleArn;
    try {
      if (roleArn) await this.#identities.role(roleArn).get({ retryNow: true });
      await this.clientFor(user).send(
        new ListObjectsV2Command({ Bucket: user.s3.bucket, Prefix: user.s3.keyPrefix, Delimiter: '/', MaxKeys: 1 }),
        { abortSignal: AbortSignal.timeout(opts.timeoutMs ?? CHECK_TIMEOUT_MS) },
      );
      return { ok: true };
    } catch (err) {
      return describeAccessFailure(err, who, user.s3.bucket, user.s3.keyPrefix);
    }
  }

  /** Destroys every client and the shared sockets. */
  destroy(): void {
    this.#destroyed = true;
    for (const client of this.#clients.values()) client.destroy();
    this.#clients.clear();
  }

  #client(roleArn: string, region: string, endpoint: string): S3Client {
    if (this.#destroyed) throw new Error('the S3 client pool is closed');
    const key = JSON.stringify([roleArn, region, endpoint]);
    let client = this.#clients.get(key);
    if (!client) {
      client = createS3Client(
        { ...this.#o.config, region, endpoint },
        {
          credentials: this.#identities.forRole(roleArn),
          requestHandler: this.#handler,
          ...this.#o.clientOverrides,
        },
      );
      this.#o.onClient?.(client);
      this.#clients.set(key, client);
    }
    return client;
  }
}

function describeAccessFailure(err: unknown, who: string, bucket: string, keyPrefix: string): AccessCheck {
  if (err instanceof CredentialsError) {
    return err.roleArn
      ? { ok: false, reason: 'AssumeRoleFailed', message: `${err.message} (for ${who})` }
      : { ok: false, reason: 'CredentialsUnavailable', message: err.message };
  }
  const status = httpStatusOf(err);
  const code = errorCodeOf(err);
  const where = `bucket ${bucket}${keyPrefix ? ` under ${keyPrefix}` : ''}`;
  if (code === 'NoSuchBucket' || status === 404) {
    return { ok: false, reason: 'BucketNotFound', message: `bucket ${bucket} does not exist (for ${who})` };
  }
  if (status === 403) {
    return { ok: false, reason: 'AccessDenied', message: `${who} may not list ${where}: ${code || 'HTTP 403'}` };
  }
  if (status === undefined) {
    const text = err instanceof Error ? err.message : String(err);
    return { ok: false, reason: 'StorageUnreachable', message: `cannot reach the S3 endpoint for ${who}: ${code ? `${code}: ` : ''}${text}` };
  }
  return { ok: false, reason: 'StorageError', message: `listing ${where} for ${who} failed: HTTP ${status} ${code}`.trimEnd() };
}
