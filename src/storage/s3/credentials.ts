/**
 * The server's AWS identity.
 *
 * Base credentials: the static keys of s3.credentials when set, otherwise the AWS SDK's default
 * chain (environment, web identity token file as IRSA sets it, the ECS / EKS Pod Identity container
 * endpoint, EC2 instance metadata), created once per server: the chain memoizes what it finds and
 * refreshes it five minutes before it expires.
 *
 * Roles on top: s3.credentials.roleArn for the server, spec.s3.roleArn per user, assumed through
 * STS with the server's credentials (the base ones, or the server role's when set). Each role has
 * one RefreshingCredentials, shared by every client that uses it: credentials are fetched once,
 * renewed in the background before they expire, and a refusal is remembered for a while so a user
 * whose role is broken cannot flood STS (whose request quota the other users share).
 *
 * The STS endpoint is the SDK's: AWS_ENDPOINT_URL_STS overrides it (tests, VPC endpoints).
 */
import { fromNodeProviderChain, fromTemporaryCredentials } from '@aws-sdk/credential-providers';
import type { Logger } from 'pino';
import type { S3Config } from '../../config/types.ts';
import { backoffDelay } from '../../backoff.ts';

/** One set of AWS credentials; `expiration` is unset for long-term keys. */
export interface AwsCredentials {
  accessKeyId: string;
  secretAccessKey: string;
  sessionToken?: string;
  expiration?: Date;
}

/** What an S3Client accepts as `credentials`; the SDK passes its own properties in. */
export type CredentialsProvider = (properties?: Record<string, unknown>) => Promise<AwsCredentials>;

/** Milliseconds since the epoch; tests pass a controlled one. */
export interface Clock {
  now(): number;
}

/** What STS is asked for one role. */
export interface AssumeRoleParams {
  roleArn: string;
  /** sts:ExternalId; only the server role (s3.credentials.externalId) has one. */
  externalId?: string;
  sessionName: string;
  durationSeconds: number;
  /** Region of the STS client (the endpoint itself comes from the SDK and AWS_ENDPOINT_URL_STS). */
  region: string;
}

/** Makes a provider that calls STS AssumeRole with `base`; tests can replace it. */
export type RoleAssumer = (base: CredentialsProvider, params: AssumeRoleParams) => CredentialsProvider;

/**
 * The server could not obtain AWS credentials: its own (`roleArn` undefined) or a role's.
 * The message names what failed and is meant for operators (logs, SftpUser status), not SFTP clients.
 */
export class CredentialsError extends Error {
  override name = 'CredentialsError';
  /** The role that could not be assumed; undefined when the base credentials are missing. */
  readonly roleArn: string | undefined;
  /** STS's error code (AccessDenied, InvalidIdentityToken, ...) or the SDK error's name. */
  readonly code: string;
  constructor(message: string, opts: { roleArn?: string; code: string; cause?: unknown }) {
    super(message, { cause: opts.cause });
    this.roleArn = opts.roleArn;
    this.code = opts.code;
  }
}

const systemClock: Clock = { now: () => Date.now() };

function describeSdkError(err: unknown): { code: string; text: string } {
  const e = err as { Code?: unknown; name?: unknown; message?: unknown } | null;
  const code = typeof e?.Code === 'string' ? e.Code : typeof e?.name === 'string' ? e.name : 'Error';
  const message = typeof e?.message === 'string' ? e.message : String(err);
  return { code, text: message && message !== code ? `${code}: ${message}` : code };
}

/**
 * The base credentials: static keys when configured, otherwise the SDK's default chain. Call once
 * per server and share the result; the chain caches and refreshes by itself.
 */
export function baseCredentials(creds: S3Config['credentials']): CredentialsProvider {
  const { accessKeyId, secretAccessKey, sessionToken } = creds;
  if (accessKeyId && secretAccessKey) {
    const fixed: AwsCredentials = { accessKeyId, secretAccessKey, ...(sessionToken ? { sessionToken } : {}) };
    return async () => fixed;
  }
  const chain = fromNodeProviderChain();
  return async (properties) => {
    try {
      return await chain(properties);
    } catch (err) {
      const { code, text } = describeSdkError(err);
      throw new CredentialsError(
        `no AWS credentials found (static keys, environment, web identity token, container endpoint, instance metadata): ${text}`,
        { code, cause: err },
      );
    }
  };
}

/** STS client settings for stsRoleAssumer. */
export interface StsOptions {
  /** Replaces the SDK's endpoint (in-process tests; the server relies on AWS_ENDPOINT_URL_STS). */
  endpoint?: string;
  /** HTTP agents to share with the S3 clients, so every role does not open its own sockets. */
  requestHandler?: NonNullable<Parameters<typeof fromTemporaryCredentials>[0]['clientConfig']>['requestHandler'];
}

/** The SDK's AssumeRole provider, with STS's error turned into a CredentialsError naming the role. */
export function stsRoleAssumer(sts: StsOptions = {}): RoleAssumer {
  return (base, params) => assumeWithSts(base, params, sts);
}

function assumeWithSts(base: CredentialsProvider, params: AssumeRoleParams, sts: StsOptions): CredentialsProvider {
  const provider = fromTemporaryCredentials({
    masterCredentials: base,
    params: {
      RoleArn: params.roleArn,
      RoleSessionName: params.sessionName,
      DurationSeconds: params.durationSeconds,
      ...(params.externalId ? { ExternalId: params.externalId } : {}),
    },
    clientConfig: {
      region: params.region,
      ...(sts.endpoint ? { endpoint: sts.endpoint } : {}),
      ...(sts.requestHandler ? { requestHandler: sts.requestHandler } : {}),
    },
  });
  return async () => {
    try {
      return await provider();
    } catch (err) {
      if (err instanceof CredentialsError) {
        // The server's own credentials are missing: say so, not "cannot assume".
        throw new CredentialsError(`cannot assume role ${params.roleArn}: ${err.message}`, {
          roleArn: params.roleArn,
          code: err.code,
          cause: err,
        });
      }
      const { code, text } = describeSdkError(err);
      throw new CredentialsError(`cannot assume role ${params.roleArn}: ${text}`, { roleArn: params.roleArn, code, cause: err });
    }
  };
}

/** Where a RefreshingCredentials stands, for checks and status reports. */
export type CredentialsState =
  | { state: 'unknown' }
  | { state: 'ok'; expiration?: Date }
  | { state: 'failed'; error: CredentialsError; retryAt: number };

export interface RefreshingCredentialsOptions {
  /** Fetches new credentials (an STS call); errors should be CredentialsErrors. */
  fetch: () => Promise<AwsCredentials>;
  /** For logs: "role arn:aws:iam::...". */
  name: string;
  log: Logger;
  clock?: Clock;
  /** Renew this long before expiry. Default 5 minutes, as the SDK does. */
  refreshBeforeMs?: number;
  /** Credentials this close to expiry are not handed out; callers wait for new ones. Default 15 s. */
  minRemainingMs?: number;
  /** After a failure, callers get the same error without a new STS call for this long, doubling up to retryMaxMs. */
  retryMinMs?: number;
  retryMaxMs?: number;
}

/**
 * Caches one identity's temporary credentials. Renewal starts `refreshBeforeMs` before expiry and
 * runs in the background while the current credentials are still good, so requests do not wait for
 * STS; only when there are no usable credentials does a caller wait. One fetch at a time.
 */
export class RefreshingCredentials {
  readonly #o: Required<Omit<RefreshingCredentialsOptions, 'clock'>> & { clock: Clock };
  #current: AwsCredentials | undefined;
  #pending: Promise<AwsCredentials> | undefined;
  #failure: { error: CredentialsError; retryAt: number; failures: number } | undefined;

  constructor(opts: RefreshingCredentialsOptions) {
    this.#o = {
      ...opts,
      refreshBeforeMs: opts.refreshBeforeMs ?? 5 * 60_000,
      minRemainingMs: opts.minRemainingMs ?? 15_000,
      retryMinMs: opts.retryMinMs ?? 5_000,
      retryMaxMs: opts.retryMaxMs ?? 120_000,
      clock: opts.clock ?? systemClock,
    };
  }

  /** A provider function for an S3Client's `credentials`. */
  readonly provider: CredentialsProvider = () => this.get();

  /**
   * Usable credentials. `retryNow` ignores a remembered failure and asks STS again (status checks
   * use it; request paths do not).
   */
  async get(opts: { retryNow?: boolean } = {}): Promise<AwsCredentials> {
    const now = this.#o.clock.now();
    const current = this.#current;
    const remaining = current?.expiration ? current.expiration.getTime() - now : Infinity;
    if (current && remaining > this.#o.refreshBeforeMs) return current;
    if (current && remaining > this.#o.minRemainingMs) {
      // Still good for a while: renew in the background, unless a failure is being waited out.
      if (!this.#failure || now >= this.#failure.retryAt) this.#fetch().catch(() => undefined);
      return current;
    }
    if (this.#failure && now < this.#failure.retryAt && !opts.retryNow && !this.#pending) throw this.#failure.error;
    return this.#fetch();
  }

  state(): CredentialsState {
    if (this.#failure && !this.#current) {
      return { state: 'failed', error: this.#failure.error, retryAt: this.#failure.retryAt };
    }
    if (this.#current) return { state: 'ok', expiration: this.#current.expiration };
    return { state: 'unknown' };
  }

  #fetch(): Promise<AwsCredentials> {
    this.#pending ??= this.#o
      .fetch()
      .then(
        (creds) => {
          if (this.#failure) this.#o.log.info({ identity: this.#o.name }, `credentials for ${this.#o.name} are available again`);
          this.#current = creds;
          this.#failure = undefined;
          return creds;
        },
        (err: unknown) => {
          const error =
            err instanceof CredentialsError ? err : new CredentialsError(`${this.#o.name}: ${String(err)}`, { code: 'Error', cause: err });
          const previous = this.#failure;
          const failures = (previous?.failures ?? 0) + 1;
          const delayMs = backoffDelay(failures, { minMs: this.#o.retryMinMs, maxMs: this.#o.retryMaxMs });
          this.#failure = { error, retryAt: this.#o.clock.now() + delayMs, failures };
          // Expired credentials are useless; still-valid ones keep serving until they expire.
          if (this.#current?.expiration && this.#current.expiration.getTime() <= this.#o.clock.now() + this.#o.minRemainingMs) {
            this.#current = undefined;
          }
          // Once per change, not once per request.
          if (previous?.error.message !== error.message) {
            this.#o.log.warn({ identity: this.#o.name, err: error, retryInMs: delayMs }, error.message);
          }
          throw error;
        },
      )
      .finally(() => {
        this.#pending = undefined;
      });
    return this.#pending;
  }
}

export interface IdentitiesOptions {
  config: S3Config;
  log: Logger;
  clock?: Clock;
  /** Replaces STS (unit tests). */
  assumeRole?: RoleAssumer;
  /** Replaces the base credentials (unit tests). */
  base?: CredentialsProvider;
  /** Passed to every RefreshingCredentials (tests shorten the windows). */
  refresh?: Pick<RefreshingCredentialsOptions, 'refreshBeforeMs' | 'minRemainingMs' | 'retryMinMs' | 'retryMaxMs'>;
}

/**
 * Every identity the server uses: its own (base credentials, or s3.credentials.roleArn assumed on
 * top) and one per user role, each created on first use and kept.
 */
export class Identities {
  readonly #o: IdentitiesOptions;
  readonly #base: CredentialsProvider;
  readonly #server: CredentialsProvider;
  readonly #serverRole: RefreshingCredentials | undefined;
  readonly #roles = new Map<string, RefreshingCredentials>();

  constructor(opts: IdentitiesOptions) {
    this.#o = opts;
    this.#base = opts.base ?? baseCredentials(opts.config.credentials);
    const { roleArn, externalId } = opts.config.credentials;
    this.#serverRole = roleArn ? this.#refreshing(this.#base, roleArn, externalId) : undefined;
    this.#server = this.#serverRole?.provider ?? this.#base;
  }

  /** The server's own credentials: the base ones, or the server role's. */
  get server(): CredentialsProvider {
    return this.#server;
  }

  /** Credentials for a user role, assumed with the server's own; "" or undefined: the server's. */
  forRole(roleArn: string | undefined): CredentialsProvider {
    return roleArn ? this.role(roleArn).provider : this.#server;
  }

  /** The cache entry of a user role (created on first use). */
  role(roleArn: string): RefreshingCredentials {
    if (roleArn === this.#o.config.credentials.roleArn && this.#serverRole) return this.#serverRole;
    let entry = this.#roles.get(roleArn);
    if (!entry) {
      entry = this.#refreshing(this.#server, roleArn, undefined);
      this.#roles.set(roleArn, entry);
    }
    return entry;
  }

  #refreshing(base: CredentialsProvider, roleArn: string, externalId: string | undefined): RefreshingCredentials {
    const { credentials, region } = this.#o.config;
    const assume = this.#o.assumeRole ?? stsRoleAssumer();
    return new RefreshingCredentials({
      fetch: assume(base, {
        roleArn,
        externalId: externalId || undefined,
        sessionName: credentials.sessionName,
        durationSeconds: Math.round(credentials.durationMs / 1000),
        region: region || 'us-east-1',
      }),
      name: `role ${roleArn}`,
      log: this.#o.log,
      clock: this.#o.clock,
      ...this.#o.refresh,
    });
  }
}
