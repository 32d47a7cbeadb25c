/**
 * The forwarding core of the test proxies that stand between s3sftp and the test S3 server: listen on
 * 127.0.0.1:0, forward to the upstream, and close() ends every live socket, so a test cannot leave a
 * proxy (or a parked keep-alive connection) running. Each proxy adds only its own behaviour: a
 * handler per request.
 *
 * The Host header and the body pass through unchanged, so SigV4 signatures stay valid unless a
 * handler changes what was signed (s3-sse-proxy.ts signs again).
 */
import { createServer as createHttpServer, request, Agent, type IncomingHttpHeaders, type IncomingMessage, type ServerResponse } from 'node:http';
import type { Server, Socket } from 'node:net';

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
