/**
 * A bandwidth-limiting TCP proxy on 127.0.0.1, for making S3 slower than the
 * SFTP client: point the server's S3 endpoint at it. Bytes towards the target
 * (request bodies: uploaded parts) are paced at `bytesPerSecond` per
 * connection; replies pass unpaced. Memory is bounded (one socket chunk in
 * hand per direction, reads paused meanwhile), and close() destroys every
 * socket, so a test cannot leave it running.
 */
import type { Socket } from 'node:net';
import { setTimeout as sleep } from 'node:timers/promises';
import { startTcpProxy } from './proxy-core.ts';

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

/** Starts the proxy in front of `options.target` (the test S3 endpoint). */
export async function startSlowProxy(options: SlowProxyOptions): Promise<SlowProxy> {
  let rate = options.bytesPerSecond;
  let forwarded = 0;

  /** A connection's pace: writes each chunk in slices, each when the pace allows (`next`: when the next byte may go). */
  const paced = () => {
    let next = performance.now();
    return async (chunk: Buffer, to: Socket, signal: AbortSignal): Promise<void> => {
      for (let offset = 0; offset < chunk.length && !signal.aborted; ) {
        const slice = chunk.subarray(offset, offset + Math.max(1024, Math.floor(rate / SLICES_PER_SECOND)));
        const now = performance.now();
        const start = Math.max(next, now);
        next = start + (slice.length * 1000) / rate;
        if (start > now) await sleep(start - now, undefined, { signal }).catch(() => undefined);
        if (signal.aborted || to.destroyed) return;
        forwarded += slice.length;
        if (!to.write(slice)) await new Promise((resolve) => to.once('drain', resolve).once('close', resolve));
        offset += slice.length;
      }
    };
  };

  const proxy = await startTcpProxy({
    upstream: options.target,
    maxConnections: options.maxConnections ?? 128,
    hooks: () => ({ toUpstream: paced() }),
  });
  return {
    endpoint: proxy.endpoint,
    port: proxy.port,
    setRate(bytesPerSecond) {
      rate = bytesPerSecond;
    },
    get bytesForwarded() {
      return forwarded;
    },
    close: proxy.close,
  };
}
