/**
 * A Kubernetes API server in miniature, for the Kubernetes user source's tests: HTTP on
 * 127.0.0.1:0, speaking the REST and watch protocol that client-node uses, for three resources:
 * SftpUsers (s3sftp.io/v1alpha1, with the status subresource), v1 Secrets,
 * coordination.k8s.io/v1 Leases and events.k8s.io/v1 Events.
 *
 * What it does as the real one does:
 * - one global resourceVersion counter (etcd's revision): every write bumps it and stamps the
 *   object; lists carry the current one in metadata.resourceVersion;
 * - metadata.generation starts at 1 and goes up when anything but metadata and status changes;
 *   writes to /status change only status (and never generation), writes to the object never
 *   change status;
 * - updates (PUT) with a stale metadata.resourceVersion get 409 Conflict, creates of an existing
 *   name 409 AlreadyExists; errors are Status objects;
 * - PATCH accepts application/merge-patch+json (RFC 7386), and strategic merge patch treated as a
 *   merge patch (the same for the fields used here); JSON patch is refused with 415;
 * - watches (?watch=true) stream newline-delimited JSON events ADDED/MODIFIED/DELETED from a
 *   bounded history after the requested resourceVersion, BOOKMARK events when asked for
 *   (allowWatchBookmarks=true), and end after timeoutSeconds; a watch from a resourceVersion older
 *   than the history gets HTTP 200 with one ERROR event carrying a Status with code 410 (reason
 *   Expired), then the stream ends, which is how the API server answers it;
 * - namespaced and all-namespaces paths, fieldSelector metadata.name= / metadata.namespace=.
 *
 * What it does not: authentication, admission and schema validation (so tests can store a resource
 * the CRD would refuse, as if admitted before the CRD got stricter), defaulting, label selectors,
 * pagination, finalizers, server-side apply.
 *
 * Fault injection: closeWatches() cuts every watch connection (a dropped connection), compact()
 * drops the event history (the next watch from an old resourceVersion gets 410), restart() does
 * both and refuses connections for a while, failRequests() answers chosen requests with an
 * error status, and injectWatchEvent() sends a malformed event.
 */

import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { Socket } from 'node:net';
import { randomUUID } from 'node:crypto';
import { writeFile } from 'node:fs/promises';
import { KubeConfig } from '@kubernetes/client-node';

type Obj = Record<string, unknown> & { metadata: Meta };
interface Meta {
  name: string;
  namespace?: string;
  uid?: string;
  resourceVersion?: string;
  generation?: number;
  creationTimestamp?: string;
  [k: string]: unknown;
}

interface Kind {
  /** "/api/v1" or "/apis/group/version". */
  prefix: string;
  apiVersion: string;
  kind: string;
  plural: string;
  /** Has the status subresource and metadata.generation (custom resources here). */
  statusSubresource: boolean;
}

const KINDS: readonly Kind[] = [
  { prefix: '/apis/s3sftp.io/v1alpha1', apiVersion: 's3sftp.io/v1alpha1', kind: 'SftpUser', plural: 'sftpusers', statusSubresource: true },
  { prefix: '/api/v1', apiVersion: 'v1', kind: 'Secret', plural: 'secrets', statusSubresource: false },
  { prefix: '/apis/coordination.k8s.io/v1', apiVersion: 'coordination.k8s.io/v1', kind: 'Lease', plural: 'leases', statusSubresource: false },
  { prefix: '/apis/events.k8s.io/v1', apiVersion: 'events.k8s.io/v1', kind: 'Event', plural: 'events', statusSubresource: false },
];

interface Event {
  rv: number;
  plural: string;
  type: 'ADDED' | 'MODIFIED' | 'DELETED';
  object: Obj;
}

interface Watcher {
  res: ServerResponse;
  plural: string;
  namespace: string | undefined;
  name: string | undefined;
  bookmarks: boolean;
  timer?: NodeJS.Timeout;
}

/** What a request looked like, for assertions ("how many status writes"). */
export interface RecordedRequest {
  method: string;
  path: string;
  query: Record<string, string>;
  at: number;
  /** The bearer token sent, if any: tells apart clients given different kubeconfigs (replicas). */
  token?: string;
}

export interface FakeKubeApiServerOptions {
  /** Events kept for watches; older resourceVersions get 410 Gone. Default 1000. */
  historyLimit?: number;
  /** How often watches that asked for them get a BOOKMARK. Default 1000 ms. */
  bookmarkIntervalMs?: number;
  /** Clock for creationTimestamp. */
  now?: () => Date;
}

class HttpError extends Error {
  readonly code: number;
  readonly reason: string;
  constructor(code: number, reason: string, message: string) {
    super(message);
    this.code = code;
    this.reason = reason;
  }
}

const clone = <T>(v: T): T => structuredClone(v);

function isMap(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/** RFC 7386 JSON merge patch. */
export function mergePatch(target: unknown, patch: unknown): unknown {
  if (!isMap(patch)) return clone(patch);
  const out: Record<string, unknown> = isMap(target) ? { ...target } : {};
  for (const [k, v] of Object.entries(patch)) {
    if (v === null) delete out[k];
    else out[k] = mergePatch(out[k], v);
  }
  return out;
}

/** Equal in everything but metadata and status: what bumps metadata.generation. */
function sameSpec(a: Obj, b: Obj): boolean {
  const strip = (o: Obj) => {
    const { metadata: _m, status: _s, ...rest } = o;
    return rest;
  };
  return JSON.stringify(sortKeys(strip(a))) === JSON.stringify(sortKeys(strip(b)));
}

function sortKeys(v: unknown): unknown {
  if (Array.isArray(v)) return v.map(sortKeys);
  if (!isMap(v)) return v;
  return Object.fromEntries(Object.keys(v).sort().map((k) => [k, sortKeys(v[k])]));
}

function statusBody(code: number, reason: string, message: string): Record<string, unknown> {
  return { kind: 'Status', apiVersion: 'v1', metadata: {}, status: 'Failure', message, reason, code };
}

/** The fake API server; start() it, stop() it in `after`. */
export class FakeKubeApiServer {
  readonly #opts: Required<FakeKubeApiServerOptions>;
  readonly #server: Server;
  readonly #sockets = new Set<Socket>();
  readonly #store = new Map<string, Map<string, Obj>>(KINDS.map((k) => [k.plural, new Map()]));
  readonly #watchers = new Set<Watcher>();
  #history: Event[] = [];
  #rv = 100;
  /** Events up to this resourceVersion are gone from the history. */
  #compactedRv = 100;
  #port = 0;
  #bookmarkTimer: NodeJS.Timeout | undefined;
  #faults: { match: (r: RecordedRequest) => boolean; code: number; remaining: number }[] = [];
  /** Every request served, in order. */
  readonly requests: RecordedRequest[] = [];

  private constructor(opts: FakeKubeApiServerOptions) {
    this.#opts = { historyLimit: 1000, bookmarkIntervalMs: 1000, now: () => new Date(), ...opts };
    this.#server = createServer((req, res) => this.#handle(req, res));
    this.#server.on('connection', (socket: Socket) => {
      this.#sockets.add(socket);
      socket.on('close', () => this.#sockets.delete(socket));
    });
  }

  static async start(opts: FakeKubeApiServerOptions = {}): Promise<FakeKubeApiServer> {
    const fake = new FakeKubeApiServer(opts);
    await fake.#listen(0);
    fake.#bookmarkTimer = setInterval(() => fake.#sendBookmarks(), fake.#opts.bookmarkIntervalMs);
    fake.#bookmarkTimer.unref();
    return fake;
  }

  get url(): string {
    return `http://127.0.0.1:${this.#port}`;
  }

  /** The current global resourceVersion. */
  get resourceVersion(): number {
    return this.#rv;
  }

  /** Open watch connections. */
  get watchCount(): number {
    return this.#watchers.size;
  }

  /** A kubeconfig for this server, as client-node wants it for plain HTTP (skipTLSVerify). */
  kubeConfig(namespace = 'default', token?: string): KubeConfig {
    const kc = new KubeConfig();
    kc.loadFromOptions({
      clusters: [{ name: 'fake', server: this.url, skipTLSVerify: true }],
      users: [token ? { name: 'fake', token } : { name: 'fake' }],
      contexts: [{ name: 'fake', cluster: 'fake', user: 'fake', namespace }],
      currentContext: 'fake',
    });
    return kc;
  }

  /** Writes the same kubeconfig as a file (for KUBECONFIG or users.kubernetes.kubeconfig). */
  async writeKubeconfig(path: string, namespace = 'default', token?: string): Promise<void> {
    await writeFile(path, this.kubeConfig(namespace, token).exportConfig());
  }

  /** The stored object, or undefined. */
  get(plural: string, namespace: string, name: string): Obj | undefined {
    const obj = this.#store.get(plural)?.get(`${namespace}/${name}`);
    return obj ? clone(obj) : undefined;
  }

  /** Every stored object of a kind. */
  list(plural: string): Obj[] {
    return [...(this.#store.get(plural)?.values() ?? [])].map(clone);
  }

  /** How many stored objects of a kind satisfy `test` (no copies: for polling thousands of objects). */
  count(plural: string, test: (obj: Readonly<Obj>) => boolean): number {
    let n = 0;
    for (const obj of this.#store.get(plural)?.values() ?? []) if (test(obj)) n++;
    return n;
  }

  /** Ends every watch by destroying its connection, as a dropped network connection would. */
  closeWatches(): void {
    for (const w of this.#watchers) {
      clearTimeout(w.timer);
      w.res.socket?.destroy();
    }
    this.#watchers.clear();
  }

  /** Drops the event history: a watch from any earlier resourceVersion now gets 410 Gone. */
  compact(): void {
    this.#history = [];
    this.#compactedRv = this.#rv;
  }

  /**
   * An API server restart: every connection is cut, the port refuses connections for `downMs`,
   * and the watch cache comes back empty (410 for every earlier resourceVersion). Stored objects
   * survive, as they do in etcd.
   */
  async restart(downMs = 300): Promise<void> {
    this.closeWatches();
    await new Promise<void>((resolve) => {
      this.#server.close(() => resolve());
      for (const s of this.#sockets) s.destroy();
    });
    this.compact();
    await new Promise((r) => setTimeout(r, downMs));
    await this.#listen(this.#port);
  }

  /** Answers the next `count` requests that `match` with `code` (e.g. 500, 403). */
  failRequests(match: (r: RecordedRequest) => boolean, code: number, count = Number.POSITIVE_INFINITY): void {
    this.#faults.push({ match, code, remaining: count });
  }

  /** Removes every failRequests() rule. */
  clearFaults(): void {
    this.#faults = [];
  }

  async stop(): Promise<void> {
    clearInterval(this.#bookmarkTimer);
    this.closeWatches();
    await new Promise<void>((resolve) => {
      this.#server.close(() => resolve());
      this.#server.closeAllConnections();
    });
  }

  async #listen(port: number): Promise<void> {
    await new Promise<void>((resolve, reject) => {
      this.#server.once('error', reject);
      this.#server.listen(port, '127.0.0.1', () => {
        this.#server.off('error', reject);
        resolve();
      });
    });
    const address = this.#server.address();
    if (address && typeof address === 'object') this.#port = address.port;
  }

  // ---- HTTP -----------------------------------------------------------------------------------

  #handle(req: IncomingMessage, res: ServerResponse): void {
    const url = new URL(req.url ?? '/', 'http://x');
    const recorded: RecordedRequest = {
      method: req.method ?? 'GET',
      path: url.pathname,
      query: Object.fromEntries(url.searchParams),
      at: Date.now(),
      token: /^Bearer (.+)$/.exec(req.headers.authorization ?? '')?.[1],
    };
    this.requests.push(recorded);
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      try {
        const fault = this.#faults.find((f) => f.remaining > 0 && f.match(recorded));
        if (fault) {
          fault.remaining--;
          throw new HttpError(fault.code, fault.code === 403 ? 'Forbidden' : 'InternalError', `injected failure ${fault.code}`);
        }
        const body = chunks.length ? (JSON.parse(Buffer.concat(chunks).toString('utf8')) as unknown) : undefined;
        this.#route(req, res, url, body);
      } catch (err) {
        const e = err instanceof HttpError ? err : new HttpError(500, 'InternalError', String(err));
        this.#send(res, e.code, statusBody(e.code, e.reason, e.message));
      }
    });
  }

  #send(res: ServerResponse, code: number, body: unknown): void {
    res.writeHead(code, { 'Content-Type': 'application/json' });
    res.end(JSON.stringify(body));
  }

  #route(req: IncomingMessage, res: ServerResponse, url: URL, body: unknown): void {
    const m = /^(\/api\/v1|\/apis\/[^/]+\/[^/]+)(?:\/namespaces\/([^/]+))?\/([^/]+)(?:\/([^/]+))?(?:\/(status))?$/.exec(url.pathname);
    const kind = m && KINDS.find((k) => k.prefix === m[1] && k.plural === m[3]);
    if (!m || !kind) throw new HttpError(404, 'NotFound', `the server could not find the requested resource (${url.pathname})`);
    const namespace = m[2];
    const name = m[4];
    const subresource = m[5];
    if (subresource && !kind.statusSubresource) throw new HttpError(404, 'NotFound', `${kind.plural} has no status subresource`);
    const method = req.method ?? 'GET';

    if (!name) {
      if (method === 'GET' && url.searchParams.get('watch') === 'true') return this.#watch(res, kind, namespace, url.searchParams);
      if (method === 'GET') return this.#send(res, 200, this.#listBody(kind, namespace, url.searchParams));
      if (method === 'POST' && namespace) return this.#send(res, 201, this.create(kind.plural, namespace, body as Obj));
      throw new HttpError(405, 'MethodNotAllowed', `${method} is not allowed here`);
    }
    if (!namespace) throw new HttpError(404, 'NotFound', 'namespaced resources need a namespace');
    switch (method) {
      case 'GET': {
        const obj = this.#store.get(kind.plural)?.get(`${namespace}/${name}`);
        if (!obj) throw this.#notFound(kind, name);
        return this.#send(res, 200, obj);
      }
      case 'PUT':
        return this.#send(res, 200, this.update(kind.plural, namespace, name, body as Obj, subresource === 'status'));
      case 'PATCH': {
        const type = (req.headers['content-type'] ?? '').split(';')[0]?.trim();
        if (type !== 'application/merge-patch+json' && type !== 'application/strategic-merge-patch+json') {
          throw new HttpError(415, 'UnsupportedMediaType', `the body of the request was in an unknown format: ${type}`);
        }
        return this.#send(res, 200, this.patch(kind.plural, namespace, name, body, subresource === 'status'));
      }
      case 'DELETE':
        return this.#send(res, 200, this.delete(kind.plural, namespace, name));
      default:
        throw new HttpError(405, 'MethodNotAllowed', `${method} is not allowed here`);
    }
  }

  #notFound(kind: Kind, name: string): HttpError {
    return new HttpError(404, 'NotFound', `${kind.plural}.${kind.apiVersion.split('/')[0]} "${name}" not found`);
  }

  #kind(plural: string): Kind {
    const kind = KINDS.find((k) => k.plural === plural);
    if (!kind) throw new Error(`unknown resource ${plural}`);
    return kind;
  }

  #matches(obj: Obj, namespace: string | undefined, params: URLSearchParams): boolean {
    if (namespace && obj.metadata.namespace !== namespace) return false;
    for (const term of (params.get('fieldSelector') ?? '').split(',').filter((t) => t)) {
      const [field, value] = term.split('=');
      if (field === 'metadata.name' && obj.metadata.name !== value) return false;
      if (field === 'metadata.namespace' && obj.metadata.namespace !== value) return false;
    }
    return true;
  }

  #listBody(kind: Kind, namespace: string | undefined, params: URLSearchParams): Record<string, unknown> {
    const items = [...(this.#store.get(kind.plural)?.values() ?? [])]
      .filter((o) => this.#matches(o, namespace, params))
      .sort((a, b) => `${a.metadata.namespace}/${a.metadata.name}`.localeCompare(`${b.metadata.namespace}/${b.metadata.name}`));
    return { kind: `${kind.kind}List`, apiVersion: kind.apiVersion, metadata: { resourceVersion: String(this.#rv) }, items };
  }

  // ---- writes (also callable directly by tests) ------------------------------------------------

  /** Creates an object (POST). */
  create(plural: string, namespace: string, input: Obj): Obj {
    const kind = this.#kind(plural);
    const name = input?.metadata?.name;
    if (typeof name !== 'string' || name === '') throw new HttpError(422, 'Invalid', 'metadata.name: Required value');
    const table = this.#store.get(plural) as Map<string, Obj>;
    if (table.has(`${namespace}/${name}`)) throw new HttpError(409, 'AlreadyExists', `${plural} "${name}" already exists`);
    const obj = clone(input);
    if (kind.statusSubresource) delete obj.status;
    obj.apiVersion = kind.apiVersion;
    obj.kind = kind.kind;
    obj.metadata = {
      ...obj.metadata,
      name,
      namespace,
      uid: randomUUID(),
      resourceVersion: String(++this.#rv),
      creationTimestamp: this.#opts.now().toISOString().replace(/\.\d{3}Z$/, 'Z'),
      ...(kind.statusSubresource ? { generation: 1 } : {}),
    };
    table.set(`${namespace}/${name}`, obj);
    this.#record(plural, 'ADDED', obj);
    return clone(obj);
  }

  /** Replaces an object (PUT), or only its status with `status`. */
  update(plural: string, namespace: string, name: string, input: Obj, status = false): Obj {
    const kind = this.#kind(plural);
    const current = this.#store.get(plural)?.get(`${namespace}/${name}`);
    if (!current) throw this.#notFound(kind, name);
    const rv = input?.metadata?.resourceVersion;
    if (rv !== undefined && rv !== '' && rv !== current.metadata.resourceVersion) {
      throw new HttpError(409, 'Conflict', `Operation cannot be fulfilled on ${plural} "${name}": the object has been modified; please apply your changes to the latest version and try again`);
    }
    return this.#store_(kind, current, clone(input), status);
  }

  /** Merge-patches an object, or only its status with `status`. */
  patch(plural: string, namespace: string, name: string, patch: unknown, status = false): Obj {
    const kind = this.#kind(plural);
    const current = this.#store.get(plural)?.get(`${namespace}/${name}`);
    if (!current) throw this.#notFound(kind, name);
    const rv = isMap(patch) && isMap(patch.metadata) ? patch.metadata.resourceVersion : undefined;
    if (rv !== undefined && rv !== current.metadata.resourceVersion) {
      throw new HttpError(409, 'Conflict', `Operation cannot be fulfilled on ${plural} "${name}": the object has been modified`);
    }
    return this.#store_(kind, current, mergePatch(current, patch) as Obj, status);
  }

  /** Deletes an object. */
  delete(plural: string, namespace: string, name: string): Obj {
    const kind = this.#kind(plural);
    const table = this.#store.get(plural) as Map<string, Obj>;
    const current = table.get(`${namespace}/${name}`);
    if (!current) throw this.#notFound(kind, name);
    table.delete(`${namespace}/${name}`);
    const gone = clone(current);
    gone.metadata.resourceVersion = String(++this.#rv);
    this.#record(plural, 'DELETED', gone);
    return clone(gone);
  }

  #store_(kind: Kind, current: Obj, next: Obj, statusOnly: boolean): Obj {
    let obj: Obj;
    if (kind.statusSubresource && statusOnly) {
      obj = clone(current);
      if (next.status === undefined) delete obj.status;
      else obj.status = next.status;
    } else {
      obj = next;
      obj.apiVersion = kind.apiVersion;
      obj.kind = kind.kind;
      // Identity and bookkeeping are the server's; status belongs to the subresource.
      const { uid, creationTimestamp, generation, namespace, name } = current.metadata;
      obj.metadata = { ...(isMap(next.metadata) ? next.metadata : {}), uid, creationTimestamp, namespace, name } as Meta;
      if (kind.statusSubresource) {
        if (current.status === undefined) delete obj.status;
        else obj.status = clone(current.status);
        obj.metadata.generation = (generation ?? 1) + (sameSpec(current, obj) ? 0 : 1);
      }
    }
    if (JSON.stringify(sortKeys({ ...obj, metadata: { ...obj.metadata, resourceVersion: '' } })) ===
        JSON.stringify(sortKeys({ ...current, metadata: { ...current.metadata, resourceVersion: '' } }))) {
      // A no-op write changes nothing, not even resourceVersion, and sends no event.
      return clone(current);
    }
    obj.metadata.resourceVersion = String(++this.#rv);
    this.#store.get(kind.plural)?.set(`${obj.metadata.namespace}/${obj.metadata.name}`, obj);
    this.#record(kind.plural, 'MODIFIED', obj);
    return clone(obj);
  }

  // ---- watch --------------------------------------------------------------------------------

  #record(plural: string, type: Event['type'], object: Obj): void {
    const event: Event = { rv: this.#rv, plural, type, object: clone(object) };
    this.#history.push(event);
    while (this.#history.length > this.#opts.historyLimit) {
      const dropped = this.#history.shift();
      if (dropped) this.#compactedRv = dropped.rv;
    }
    for (const w of this.#watchers) {
      if (w.plural !== plural) continue;
      if (w.namespace && object.metadata.namespace !== w.namespace) continue;
      if (w.name && object.metadata.name !== w.name) continue;
      this.#write(w, { type, object });
    }
  }

  #write(w: Watcher, event: unknown): void {
    if (!w.res.writableEnded && !w.res.destroyed) w.res.write(`${JSON.stringify(event)}\n`);
  }

  #watch(res: ServerResponse, kind: Kind, namespace: string | undefined, params: URLSearchParams): void {
    const rvParam = params.get('resourceVersion') ?? '';
    const fields = (params.get('fieldSelector') ?? '').split(',');
    const name = fields.find((f) => f.startsWith('metadata.name='))?.slice('metadata.name='.length);
    const ns = namespace ?? fields.find((f) => f.startsWith('metadata.namespace='))?.slice('metadata.namespace='.length);
    res.writeHead(200, { 'Content-Type': 'application/json', 'Transfer-Encoding': 'chunked' });
    res.flushHeaders();
    const w: Watcher = { res, plural: kind.plural, namespace: ns, name, bookmarks: params.get('allowWatchBookmarks') === 'true' };
    const matches = (o: Obj) => (!w.namespace || o.metadata.namespace === w.namespace) && (!w.name || o.metadata.name === w.name);

    if (rvParam === '' || rvParam === '0') {
      // "Start at most recent" / "any": the current state as ADDED events, then changes.
      for (const obj of this.#store.get(kind.plural)?.values() ?? []) if (matches(obj)) this.#write(w, { type: 'ADDED', object: obj });
    } else {
      const from = Number(rvParam);
      if (!Number.isSafeInteger(from) || from < this.#compactedRv) {
        this.#write(w, {
          type: 'ERROR',
          object: statusBody(410, 'Expired', `too old resource version: ${rvParam} (${this.#compactedRv + 1})`),
        });
        res.end();
        return;
      }
      for (const e of this.#history) {
        if (e.rv > from && e.plural === kind.plural && matches(e.object)) this.#write(w, { type: e.type, object: e.object });
      }
    }
    const timeout = Number(params.get('timeoutSeconds') ?? '0');
    if (timeout > 0) {
      w.timer = setTimeout(() => {
        this.#watchers.delete(w);
        res.end();
      }, timeout * 1000);
      w.timer.unref();
    }
    this.#watchers.add(w);
    res.on('close', () => {
      clearTimeout(w.timer);
      this.#watchers.delete(w);
    });
  }

  /** Writes `event` as it is to every watch of `plural` (to test clients against malformed events). */
  injectWatchEvent(plural: string, event: unknown): void {
    for (const w of this.#watchers) if (w.plural === plural) this.#write(w, event);
  }

  /** Sends a BOOKMARK to every watch that asked for them (also done on a timer). */
  sendBookmarks(): void {
    this.#sendBookmarks();
  }

  #sendBookmarks(): void {
    for (const w of this.#watchers) {
      if (!w.bookmarks) continue;
      const kind = this.#kind(w.plural);
      this.#write(w, {
        type: 'BOOKMARK',
        object: { kind: kind.kind, apiVersion: kind.apiVersion, metadata: { resourceVersion: String(this.#rv) } },
      });
    }
  }
}

