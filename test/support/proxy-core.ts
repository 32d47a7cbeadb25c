/**
 * The forwarding core of the test proxies that stand between s3sftp and the test S3 server: listen on
 * 127.0.0.1:0, forward to the upstream, and close() ends every live socket, so a test cannot leave a
 * proxy (or a parked keep-alive connection) running. Each proxy adds only its own behaviour: an HTTP
 * proxy a handler per request, a TCP proxy a hook per chunk.
 *
 * The Host header and the body pass through unchanged, so SigV4 signatures stay valid unless a
 * handler changes what was signed (s3-sse-proxy.ts signs again).
 */
import { createServer as createHttpServer, request, Agent, type IncomingHttpHeaders, type IncomingMessage, type ServerResponse } from 'node:http';
import { createServer as createTcpServer, connect, type Server, type Socket } from 'node:net';

/** A proxy listening on 127.0.0.1. */
export interface Listening {
  /** http://127.0.0.1:PORT, to give the server as its S3 endpoint. */
  endpoint: string;
  port: number;
  /** Aborted when close() starts: sleeps and waits of the proxy's own behaviour end with it. */
  signal: AbortSignal;
  close(): Promise<void>;
}

/** What an HTTP proxy's handler gets besides the request and its response. */
export interface Forwarder {
  /** Sends `req` upstream (method, path, body; `headers` or its own); resolves with the answer, body unread. */
  forward(req: IncomingMessage, headers?: IncomingHttpHeaders): Promise<IncomingMessage>;
  /** Passes an upstream answer on to the client as it is. */
  relay(answer: IncomingMessage, res: ServerResponse): void;
  signal: AbortSignal;
}

/**
 * One request's handling; a throw or rejection drops the client's connection, as an upstream that
 * cannot be reached would.
 */
export type RequestHandler = (req: IncomingMessage, res: ServerResponse, proxy: Forwarder) => void | Promise<void>;

export interface HttpProxyOptions {
  /** Where to forward, e.g. the Swift endpoint http://127.0.0.1:PORT. */
  upstream: string;
  handle: RequestHandler;
  /** How long an idle client connection is kept open (the SDK reuses its sockets); Node's default when absent. */
  keepAliveTimeoutMs?: number;
}

/** An HTTP proxy: each request goes to `handle`, which decides when and how to forward it. */
export async function startHttpProxy(options: HttpProxyOptions): Promise<Listening> {
  const target = new URL(options.upstream);
  const agent = new Agent({ keepAlive: true, maxSockets: 256 });
  const abort = new AbortController();
  const forwarder: Forwarder = {
    forward: (req, headers = req.headers) =>
      new Promise((resolve, reject) => {
        const out = request({ host: target.hostname, port: target.port, method: req.method, path: req.url, headers, agent }, resolve);
        out.on('error', reject);
        req.on('error', () => out.destroy());
        req.pipe(out);
      }),
    relay(answer, res) {
      res.writeHead(answer.statusCode ?? 502, answer.headers);
      answer.pipe(res);
    },
    signal: abort.signal,
  };
  const server = createHttpServer((req, res) => {
    Promise.resolve()
      .then(() => options.handle(req, res, forwarder))
      .catch(() => req.socket.destroy());
  });
  if (options.keepAliveTimeoutMs !== undefined) server.keepAliveTimeout = options.keepAliveTimeoutMs;
  return listen(server, abort, () => agent.destroy());
}

/** Copies one direction of a TCP connection; resolves when the next chunk may be read. */
export type ChunkHook = (chunk: Buffer, to: Socket, signal: AbortSignal) => Promise<void>;

/** The hooks of one connection, one a direction; a direction without one is written as it comes. */
export interface ConnectionHooks {
  toUpstream?: ChunkHook;
  toClient?: ChunkHook;
}

export interface TcpProxyOptions {
  /** Where to forward, e.g. the Swift endpoint http://127.0.0.1:PORT (only host and port count). */
  upstream: string;
  /** Client connections accepted at once. */
  maxConnections?: number;
  /** Called for each new connection, so a hook can keep state of its own connection (a pace). */
  hooks?: () => ConnectionHooks;
}

/** A TCP proxy: each connection gets one to the upstream; either side's close or error ends both. */
export async function startTcpProxy(options: TcpProxyOptions): Promise<Listening> {
  const target = new URL(options.upstream);
  const abort = new AbortController();
  const server = createTcpServer((client) => {
    const upstream = connect(Number(target.port), target.hostname);
    for (const s of [client, upstream]) {
      s.on('error', () => {
        client.destroy();
        upstream.destroy();
      });
    }
    client.on('close', () => upstream.destroy());
    upstream.on('close', () => client.destroy());
    const hooks = options.hooks?.() ?? {};
    pump(client, upstream, hooks.toUpstream, abort.signal);
    pump(upstream, client, hooks.toClient, abort.signal);
  });
  if (options.maxConnections !== undefined) server.maxConnections = options.maxConnections;
  // The upstream sockets are ended with the client ones they belong to.
  return listen(server, abort);
}

/** Copies `from` to `to` through `hook` (one chunk in hand, reads paused meanwhile); ends `to` when `from` ends. */
function pump(from: Socket, to: Socket, hook: ChunkHook | undefined, signal: AbortSignal): void {
  if (!hook) {
    from.on('data', (chunk: Buffer) => {
      if (!to.write(chunk)) {
        from.pause();
        to.once('drain', () => from.resume());
      }
    });
    from.on('end', () => to.end());
    return;
  }
  let busy: Promise<void> = Promise.resolve();
  from.on('data', (chunk: Buffer) => {
    from.pause();
    busy = busy
      .then(() => hook(chunk, to, signal))
      .then(
        () => void from.resume(),
        () => void from.destroy(),
      );
  });
  from.on('end', () => void busy.then(() => to.end()));
}

/** Listens on 127.0.0.1:0; close() aborts `abort`, destroys every connection, then runs `cleanup`. */
async function listen(server: Server, abort: AbortController, cleanup?: () => void): Promise<Listening> {
  const sockets = new Set<Socket>();
  server.on('connection', (s: Socket) => {
    sockets.add(s);
    s.on('close', () => sockets.delete(s));
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => resolve());
  });
  const port = (server.address() as { port: number }).port;
  return {
    endpoint: `http://127.0.0.1:${port}`,
    port,
    signal: abort.signal,
    async close() {
      abort.abort();
      for (const s of sockets) s.destroy();
      cleanup?.();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}
