/**
 * Kubernetes Events on SftpUser resources, so `kubectl describe sftpuser x` and `kubectl get
 * events` show what happened: Ready turning True or False, and a change of the reason it is False
 * (a username conflict, a missing Secret, an access failure). Only the replica holding the Lease
 * records them (the controller calls observe() on the leader only), so N replicas do not record
 * each event N times.
 *
 * An event is recorded when a resource's (Ready status, reason) differs from what this leader saw
 * last, or, for a resource it sees for the first time, from the status already on the resource;
 * so a new leader does not repeat the history. Rate limits keep a flapping resource or a mass
 * change (a Secret namespace becoming unreadable for 10,000 users) from flooding the API server:
 * the same (resource, reason) at most once per `repeatIntervalMs`, and at most `perMinute`
 * events in all; what is dropped is counted in the log.
 *
 * events.k8s.io/v1, the API client-go's new recorder uses; RBAC: create on events.k8s.io events.
 */
import { randomBytes } from 'node:crypto';
import { EventsV1Api, type EventsV1Event, type KubeConfig } from '@kubernetes/client-node';
import { microTime } from './lease.ts';
import { GROUP, KIND, READY, VERSION, objectKey, type DesiredReady, type SftpUserResource } from './sftp-user-resource.ts';
import { describeError } from './api.ts';

/** The controller name events carry (reportingController). */
export const REPORTING_CONTROLLER = 's3sftp.io/s3sftp';

/** One event to record. */
export interface EventRecord {
  namespace: string;
  body: EventsV1Event;
}

/** Where events go: the API server, or a test's list. */
export type EventSink = (event: EventRecord) => Promise<void>;

/** Creates events through client-node. */
export function kubeEventSink(kubeConfig: KubeConfig): EventSink {
  const api = kubeConfig.makeApiClient(EventsV1Api);
  return async ({ namespace, body }) => {
    await api.createNamespacedEvent({ namespace, body });
  };
}

interface RecorderLogger {
  info(obj: object, msg: string): void;
  warn(obj: object, msg: string): void;
}

export interface EventRecorderOptions {
  sink: EventSink;
  /** This replica's identity (reportingInstance), e.g. the Lease identity. */
  instance: string;
  log: RecorderLogger;
  /** Same resource and reason at most once per this long. Default 10 minutes. */
  repeatIntervalMs?: number;
  /** Events in all per minute. Default 60. */
  perMinute?: number;
  now?: () => number;
}

/** An event's note has a 1 kB limit in events.k8s.io/v1. */
const MAX_NOTE = 1024;

type Seen = { status: string; reason: string };

/** Records Ready transitions as Events; see the module comment. */
export class EventRecorder {
  readonly #o: EventRecorderOptions;
  readonly #now: () => number;
  /** Last (status, reason) seen per resource uid or key. */
  readonly #seen = new Map<string, Seen>();
  /** When an event for "key reason" was last recorded. */
  readonly #recorded = new Map<string, number>();
  #windowStart = 0;
  #inWindow = 0;
  #dropped = 0;
  /** Events sent (tests). */
  sent = 0;

  constructor(opts: EventRecorderOptions) {
    this.#o = opts;
    this.#now = opts.now ?? Date.now;
  }

  /**
   * The leader's verdicts: all of them (resources not among them are forgotten), or with
   * `changes` only those that changed, and the resources removed since.
   */
  observe(verdicts: readonly { resource: SftpUserResource; ready: DesiredReady }[], changes?: { removed: readonly SftpUserResource[] }): void {
    const present = new Set<string>();
    for (const { resource, ready } of verdicts) {
      const id = resource.metadata.uid ?? objectKey(resource.metadata);
      if (!changes) present.add(id);
      const before = this.#seen.get(id) ?? onResource(resource);
      this.#seen.set(id, { status: ready.status, reason: ready.reason });
      if (before && before.status === ready.status && before.reason === ready.reason) continue;
      this.#record(resource, ready);
    }
    if (changes) for (const r of changes.removed) this.#seen.delete(r.metadata.uid ?? objectKey(r.metadata));
    else for (const id of this.#seen.keys()) if (!present.has(id)) this.#seen.delete(id);
  }

  #record(resource: SftpUserResource, ready: DesiredReady): void {
    const now = this.#now();
    const key = `${objectKey(resource.metadata)} ${ready.reason}`;
    const last = this.#recorded.get(key);
    if (last !== undefined && now - last < (this.#o.repeatIntervalMs ?? 10 * 60_000)) return;
    if (now - this.#windowStart >= 60_000) {
      if (this.#dropped > 0) this.#o.log.warn({ dropped: this.#dropped }, 'events not recorded in the last minute (rate limit)');
      this.#windowStart = now;
      this.#inWindow = 0;
      this.#dropped = 0;
    }
    if (this.#inWindow >= (this.#o.perMinute ?? 60)) {
      this.#dropped++;
      return;
    }
    this.#inWindow++;
    this.#recorded.set(key, now);
    if (this.#recorded.size > 10_000) this.#prune(now);
    const namespace = resource.metadata.namespace ?? '';
    const name = resource.metadata.name ?? '';
    const note = ready.message.length > MAX_NOTE ? `${ready.message.slice(0, MAX_NOTE - 3)}...` : ready.message;
    const body: EventsV1Event = {
      apiVersion: 'events.k8s.io/v1',
      kind: 'Event',
      // client-go's naming: the object's name and a unique suffix.
      metadata: { name: `${name}.${randomBytes(8).toString('hex')}`, namespace },
      eventTime: microTime(now) as unknown as Date,
      reportingController: REPORTING_CONTROLLER,
      reportingInstance: this.#o.instance,
      action: ready.status === 'True' ? 'Loaded' : 'Refused',
      reason: ready.reason,
      note: `${READY}=${ready.status}: ${note}`,
      type: ready.status === 'True' ? 'Normal' : 'Warning',
      regarding: {
        apiVersion: `${GROUP}/${VERSION}`,
        kind: KIND,
        name,
        namespace,
        uid: resource.metadata.uid,
        resourceVersion: resource.metadata.resourceVersion,
      },
    };
    this.sent++;
    this.#o.sink({ namespace, body }).catch((err: unknown) => {
      // Events are a courtesy: a failure (RBAC, API down) is logged and never retried.
      this.#o.log.warn({ resource: objectKey(resource.metadata), reason: ready.reason, error: describeError(err) }, 'recording an event failed');
    });
  }

  #prune(now: number): void {
    const interval = this.#o.repeatIntervalMs ?? 10 * 60_000;
    for (const [key, at] of this.#recorded) if (now - at >= interval) this.#recorded.delete(key);
  }
}

/** The Ready condition already on the resource (written by an earlier leader), if any. */
function onResource(resource: SftpUserResource): Seen | undefined {
  const c = resource.status?.conditions?.find((x) => x.type === READY);
  return c ? { status: c.status, reason: c.reason } : undefined;
}
