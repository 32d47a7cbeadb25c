/**
 * A bandwidth-limiting TCP proxy on 127.0.0.1, for making S3 slower than the
 * SFTP client: point the server's S3 endpoint at it. Bytes towards the target
 * (request bodies: uploaded parts) are paced at `bytesPerSecond` per
 * connection; replies pass unpaced. Memory is bounded (one socket chunk in
 * hand per direction, reads paused meanwhile), and close() destroys every
 * socket, so a test cannot leave it running.
 */
import { createServer, connect, type Socket } from 'node:net';
import { setTimeout as sleep } from 'node:timers/promises';

export interface SlowProxy {
  /** http://127.0.0.1:PORT, to use as the S3 endpoint. */
  endpoint: string;
  port: number;
  /** Changes the pace of every connection, open ones included. */
  setRate(bytesPerSecond: number): void;
  /** Bytes forwarded towards the target so far. */
  readonly bytesForwarded: number;
  close(): Promise<void>;
}

export interface SlowProxyOptions {
  /** Where to forward, e.g. the Swift endpoint http://127.0.0.1:PORT. */
  target: string;
  bytesPerSecond: number;
  /** Open connections accepted at once (the server's S3 client pools sockets). */
  maxConnections?: number;
}

// Small slices keep the pace smooth rather than bursty.
const SLICES_PER_SECOND = 20;

export async function startSlowProxy(options: SlowProxyOptions): Promise<SlowProxy> {
  const target = new URL(options.target);
  let rate = options.bytesPerSecond;
  let forwarded = 0;
  let closed = false;
  const sockets = new Set<Socket>();
  const abort = new AbortController();

  /** Copies `from` to `to`, paced when `paced`; ends `to` when `from` ends. */
  const pipe = (from: Socket, to: Socket, paced: boolean): void => {
    let next = performance.now();
    let busy: Promise<void> = Promise.resolve();
    from.on('data', (chunk: Buffer) => {
      if (!paced) {
        if (!to.write(chunk)) {
          from.pause();
          to.once('drain', () => from.resume());
        }
        return;
      }
      from.pause();
      busy = busy.then(async () => {
        for (let offset = 0; offset < chunk.length && !closed; ) {
          const slice = chunk.subarray(offset, offset + Math.max(1024, Math.floor(rate / SLICES_PER_SECOND)));
          const now = performance.now();
          const start = Math.max(next, now);
          next = start + (slice.length * 1000) / rate;
          if (start > now) await sleep(start - now, undefined, { signal: abort.signal }).catch(() => undefined);
          if (closed || to.destroyed) return;
          forwarded += slice.length;
          if (!to.write(slice)) await new Promise((resolve) => to.once('drain', resolve).once('close', resolve));
          offset += slice.length;
        }
        from.resume();
      });
    });
    from.on('end', () => void busy.then(() => to.end()));
  };

  const server = createServer((client) => {
    const upstream = connect(Number(target.port), target.hostname);
    for (const s of [client, upstream]) {
      sockets.add(s);
      s.on('close', () => sockets.delete(s));
      s.on('error', () => {
        client.destroy();
        upstream.destroy();
      });
    }
    client.on('close', () => upstream.destroy());
    upstream.on('close', () => client.destroy());
    pipe(client, upstream, true);
    pipe(upstream, client, false);
  });
  server.maxConnections = options.maxConnections ?? 128;
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => resolve());
  });
  const port = (server.address() as { port: number }).port;
  return {
    endpoint: `http://127.0.0.1:${port}`,
    port,
    setRate(bytesPerSecond) {
      rate = bytesPerSecond;
    },
    get bytesForwarded() {
      return forwarded;
    },
    async close() {
      closed = true;
      abort.abort();
      for (const s of sockets) s.destroy();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}
