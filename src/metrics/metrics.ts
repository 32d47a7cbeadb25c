/**
 * Every Prometheus metric the server exports, created on one registry that
 * the caller owns (server.ts), never on prom-client's global one. The other
 * modules do not import prom-client: they report through SessionEvents,
 * UploadEvents and the SSH server's events, and the adapters below turn those
 * into metric updates.
 *
 * Labels are bounded: no paths, no usernames from failed logins. A `user`
 * label is added to the transfer counters and s3sftp_sessions_active only with
 * metrics.perUserLabels, and takes at most perUserLabelLimit values plus "other".
 */
import { Counter, Gauge, Histogram, collectDefaultMetrics, type Registry } from 'prom-client';
import type { SshServerEvents } from '../ssh/server.ts';
import type { UploadEvents } from '../storage/s3/upload-pipeline.ts';
import { UserLabeler } from './user-label.ts';

/** The outcome label: the Helm chart's alerts treat anything but "success" as an error. */
export type Outcome = 'success' | 'failure';

export interface MetricsOptions {
  registry: Registry;
  /** Add a `user` label to the transfer counters (metrics.perUserLabels). */
  perUserLabels?: boolean;
  /** Distinct `user` values before the rest are counted as "other" (metrics.perUserLabelLimit). Default 100. */
  perUserLabelLimit?: number;
  /** Also register prom-client's default Node.js process metrics (default true). */
  processMetrics?: boolean;
}

// From a small file's near-instant completion to multi-GiB uploads whose last
// parts are still in flight at CLOSE.
const LAG_BUCKETS = [0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600];
// One part is 5 MiB to 5 GiB.
const PART_BUCKETS = [0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600];
// Metadata requests take milliseconds; part uploads and copies much longer.
const REQUEST_BUCKETS = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300];

/** The server's metrics, with adapters from the events the other modules emit. */
export class Metrics {
  readonly registry: Registry;
  readonly uploadCompletionLag: Histogram;
  readonly uploadPendingBytes: Gauge;
  readonly uploadPartsInFlight: Gauge;
  readonly partUploadDuration: Histogram;
  readonly s3Requests: Counter<'operation' | 'outcome'>;
  readonly s3RequestDuration: Histogram<'operation'>;
  readonly transfers: Counter<'direction' | 'outcome' | 'user'>;
  readonly transferBytes: Counter<'direction' | 'user'>;
  readonly sessionsActive: Gauge<'user'>;
  readonly authAttempts: Counter<'method' | 'outcome'>;
  readonly usersLoaded: Gauge;
  readonly #perUser: boolean;
  readonly #users: UserLabeler;
  #userCount: () => number = () => 0;

  constructor(options: MetricsOptions) {
    const registers = [options.registry];
    this.registry = options.registry;
    this.#perUser = options.perUserLabels === true;
    this.#users = new UserLabeler(options.perUserLabelLimit ?? 100);
    const userLabel = this.#perUser ? (['user'] as const) : [];
    if (options.processMetrics !== false) collectDefaultMetrics({ register: options.registry });

    this.uploadCompletionLag = new Histogram({
      name: 's3sftp_upload_completion_lag_seconds',
      help: "Time from a client's CLOSE of an upload to the object being complete in S3.",
      buckets: LAG_BUCKETS,
      registers,
    });
    this.uploadPendingBytes = new Gauge({
      name: 's3sftp_upload_pending_bytes',
      help: 'Bytes received from clients and not yet stored in S3 (held in memory).',
      registers,
    });
    this.uploadPartsInFlight = new Gauge({
      name: 's3sftp_upload_parts_in_flight',
      help: 'Upload parts (and single-request uploads) being sent to S3.',
      registers,
    });
    this.partUploadDuration = new Histogram({
      name: 's3sftp_s3_part_upload_duration_seconds',
      help: 'Time to store one upload part in S3, retries included.',
      buckets: PART_BUCKETS,
      registers,
    });
    this.s3Requests = new Counter({
      name: 's3sftp_s3_requests_total',
      help: 'HTTP requests to S3 (each retry counts) by operation and outcome; requests cancelled because a transfer was abandoned are not counted.',
      labelNames: ['operation', 'outcome'],
      registers,
    });
    this.s3RequestDuration = new Histogram({
      name: 's3sftp_s3_request_duration_seconds',
      help: 'Duration of HTTP requests to S3 by operation.',
      labelNames: ['operation'],
      buckets: REQUEST_BUCKETS,
      registers,
    });
    this.transfers = new Counter({
      name: 's3sftp_transfers_total',
      help: 'Finished file transfers by direction (upload, download) and outcome.',
      labelNames: ['direction', 'outcome', ...userLabel],
      registers,
    });
    this.transferBytes = new Counter({
      name: 's3sftp_transfer_bytes_total',
      help: 'Bytes of finished file transfers: received from clients (upload) or sent to them (download).',
      labelNames: ['direction', ...userLabel],
      registers,
    });
    this.sessionsActive = new Gauge({
      name: 's3sftp_sessions_active',
      help: 'SFTP and SCP sessions open now.',
      labelNames: [...userLabel],
      registers,
    });
    this.authAttempts = new Counter({
      name: 's3sftp_auth_attempts_total',
      help: 'SSH authentication attempts by method and outcome.',
      labelNames: ['method', 'outcome'],
      registers,
    });
    const userCount = () => this.#userCount();
    this.usersLoaded = new Gauge({
      name: 's3sftp_users_loaded',
      help: 'Users loaded from the user sources (enabled or not).',
      registers,
      collect() {
        this.set(userCount());
      },
    });
    // Series that exist from the start, so rate() and alerts see a zero rather than nothing.
    for (const outcome of ['success', 'failure']) {
      for (const method of ['password', 'publickey']) this.authAttempts.inc({ method, outcome }, 0);
      if (this.#perUser) continue;
      for (const direction of ['upload', 'download']) this.transfers.inc({ direction, outcome }, 0);
    }
    if (!this.#perUser) for (const direction of ['upload', 'download']) this.transferBytes.inc({ direction }, 0);
  }

  /** Where s3sftp_users_loaded reads the number of users at each scrape. */
  countUsersWith(count: () => number): void {
    this.#userCount = count;
  }

  /** Records one HTTP request to S3; `outcome` undefined means cancelled by us, which is not counted. */
  s3Request(operation: string, outcome: Outcome | undefined, seconds: number): void {
    if (outcome === undefined) return;
    this.s3Requests.inc({ operation, outcome });
    this.s3RequestDuration.observe({ operation }, seconds);
  }

  /** Events for the S3 upload path (shared by every user's storage). */
  uploadEvents(): UploadEvents {
    return {
      onBuffered: (bytes) => this.uploadPendingBytes.inc(bytes),
      onStored: (bytes) => this.uploadPendingBytes.dec(bytes),
      onDiscarded: (bytes) => this.uploadPendingBytes.dec(bytes),
      onPartStart: () => this.uploadPartsInFlight.inc(),
      onPartDone: (_bytes, seconds) => {
        this.uploadPartsInFlight.dec();
        this.partUploadDuration.observe(seconds);
      },
      onCommit: (lagSeconds) => this.uploadCompletionLag.observe(lagSeconds),
    };
  }

  /** Events for the SSH server and its SFTP sessions. */
  serverEvents(): SshServerEvents {
    return {
      authAttempt: ({ method, ok }) => this.authAttempts.inc({ method, outcome: ok ? 'success' : 'failure' }),
      sessionOpened: (username) => (this.#perUser ? this.sessionsActive.inc({ user: this.#users.label(username ?? '') }) : this.sessionsActive.inc()),
      sessionClosed: (username) => (this.#perUser ? this.sessionsActive.dec({ user: this.#users.label(username ?? '') }) : this.sessionsActive.dec()),
      transferDone: ({ user: username, direction, bytes, ok }) => {
        const outcome: Outcome = ok ? 'success' : 'failure';
        const user = this.#perUser ? this.#users.label(username) : '';
        this.transfers.inc(this.#perUser ? { direction, outcome, user } : { direction, outcome });
        this.transferBytes.inc(this.#perUser ? { direction, user } : { direction }, bytes);
      },
    };
  }
}
