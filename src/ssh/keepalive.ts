/**
 * SSH keepalives from the server. Load balancers drop TCP flows that stay idle too long (the AWS
 * NLB after 350 s), which kills an idle SFTP session without either end noticing until it next
 * writes. ssh2's server sends `keepalive@openssh.com` global requests itself once a connection
 * has been silent for `keepaliveInterval` ms, and ends it after `keepaliveCountMax` unanswered
 * ones; any packet from the client restarts the count.
 *
 * Two gaps are filled here: ssh2 has no "off" (0 falls back to its own 15 s default), so off is an
 * interval longer than any session; and ending a connection only half-closes the socket, which a
 * client that stopped reading never completes, so the socket is destroyed shortly after.
 */
import type { Socket } from 'node:net';
import type { Connection } from 'ssh2';

/** Keepalive settings (config keepalive.*). */
export interface KeepaliveSettings {
  /** Client silence before a keepalive is sent; 0 turns keepalives off. */
  intervalMs: number;
  countMax: number;
}

/** The largest delay setInterval accepts (a longer one fires at once): about 24.8 days. */
const MAX_TIMER_MS = 2 ** 31 - 1;
/** How long an ended connection may take to close before its socket is destroyed. */
const DESTROY_AFTER_MS = 2000;

/** The ssh2 Server options for these settings. */
export function keepaliveServerOptions(settings: KeepaliveSettings | undefined): { keepaliveInterval: number; keepaliveCountMax: number } {
  const intervalMs = settings?.intervalMs ?? 60_000;
  return {
    keepaliveInterval: intervalMs > 0 ? Math.min(intervalMs, MAX_TIMER_MS) : MAX_TIMER_MS,
    keepaliveCountMax: settings?.countMax ?? 3,
  };
}

/** True for the error ssh2 emits when a client left countMax keepalives unanswered. */
export function isKeepaliveTimeout(err: Error): boolean {
  return (err as Error & { level?: string }).level === 'client-timeout';
}

/**
 * Destroys the connection's socket if it has not closed shortly after ssh2 ended it: a frozen
 * client never acknowledges the close, and its connection would linger in the live set.
 */
export function destroyIfLingering(client: Connection): void {
  // ssh2 keeps the socket in a private field; Connection exposes no other handle on it.
  const socket = (client as unknown as { _sock?: Socket })._sock;
  if (!socket || socket.destroyed) return;
  setTimeout(() => socket.destroy(), DESTROY_AFTER_MS).unref();
}
