/**
 * The operator's HTTP listener: GET /metrics (Prometheus text format),
 * /healthz (the process is alive) and /readyz (it should receive new
 * connections). It starts before anything else so probes get an answer while
 * the server checks the bucket and loads users.
 */
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Logger } from 'pino';
import type { Registry } from 'prom-client';

/** Why the server is not ready, or undefined when it is. */
export type ReadinessCheck = () => string | undefined;

export interface MetricsListenerOptions {
  registry: Registry;
  host: string;
  port: number;
  notReadyReason: ReadinessCheck;
  log: Logger;
}

/** A running listener. */
export interface MetricsListener {
  address: AddressInfo;
  close(): Promise<void>;
}

/** Starts the listener; rejects (EADDRINUSE, EACCES) when the address cannot be used. */
export async function startMetricsListener(options: MetricsListenerOptions): Promise<MetricsListener> {
  const { registry, notReadyReason, log } = options;
  const server: Server = createServer((req, res) => {
    const path = (req.url ?? '/').split('?')[0];
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      res.writeHead(405, { allow: 'GET, HEAD' }).end();
      return;
    }
    const text = (status: number, body: string) => {
      res.writeHead(status, { 'content-type': 'text/plain; charset=utf-8', 'cache-control': 'no-store' });
      res.end(req.method === 'HEAD' ? undefined : `${body}\n`);
    };
    switch (path) {
      case '/metrics':
        registry.metrics().then(
          (body) => {
            res.writeHead(200, { 'content-type': registry.contentType, 'cache-control': 'no-store' });
            res.end(req.method === 'HEAD' ? undefined : body);
          },
          (err: unknown) => {
            log.error({ err }, 'collecting metrics failed');
            text(500, 'collecting metrics failed');
          },
        );
        return;
      case '/healthz':
        text(200, 'ok');
        return;
      case '/readyz': {
        const reason = notReadyReason();
        text(reason === undefined ? 200 : 503, reason === undefined ? 'ready' : `not ready: ${reason}`);
        return;
      }
      default:
        text(404, 'not found; try /metrics, /healthz or /readyz');
    }
  });
  // Scrapes and probes are tiny; a slow or stuck peer must not hold a socket for long.
  server.requestTimeout = 10_000;
  server.headersTimeout = 5_000;
  server.keepAliveTimeout = 5_000;
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(options.port, options.host, () => {
      server.off('error', reject);
      resolve();
    });
  });
  server.on('error', (err) => log.error({ err }, 'metrics listener error'));
  // The SSH side decides when the process ends; a start-up failure after this
  // point must not leave the process running just to answer probes.
  server.unref();
  return {
    address: server.address() as AddressInfo,
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        // Prometheus keeps its connection open between scrapes.
        server.closeAllConnections();
      }),
  };
}
