/**
 * Metrics of the hardening layer (docs/security.md): connections refused by
 * a limit, a ban or the grace time; bans; sources banned now; unauthenticated
 * connections now; password verifications running and queued. Kept apart from
 * metrics.ts so the SSH server's limits can change without touching it.
 */
import { Counter, Gauge, type Registry } from 'prom-client';
import type { SshServerEvents } from '../ssh/server.ts';

/** Reads the live figures at each scrape. */
export interface HardeningState {
  bannedSources(): number;
  unauthenticatedConnections(): number;
  verifications(): { running: number; queued: number };
}

const REASONS = [
  'banned',
  'unauthenticated-total',
  'unauthenticated-per-source',
  'connections-per-user',
  'connections-per-source',
  'login-grace-time',
  'channels-per-connection',
] as const;

/** Registers the metrics and returns the SSH server events that feed them, plus the ban counter. */
export function hardeningMetrics(registry: Registry, state: HardeningState): { events: SshServerEvents; banned(): void } {
  const registers = [registry];
  const refused = new Counter({
    name: 's3sftp_connections_refused_total',
    help: 'Connections (or channels) closed or refused by a limit, a ban or the login grace time, by reason.',
    labelNames: ['reason'],
    registers,
  });
  for (const reason of REASONS) refused.inc({ reason }, 0);
  const bans = new Counter({ name: 's3sftp_defender_bans_total', help: 'Source addresses banned by the defender.', registers });
  const queueFull = new Counter({
    name: 's3sftp_auth_verify_rejected_total',
    help: 'Password attempts failed at once because the verification queue (auth.verifyQueue) was full.',
    registers,
  });
  new Gauge({
    name: 's3sftp_defender_banned_sources',
    help: 'Source addresses banned now.',
    registers,
    collect() {
      this.set(state.bannedSources());
    },
  });
  new Gauge({
    name: 's3sftp_connections_unauthenticated',
    help: 'Connections open now that have not authenticated yet.',
    registers,
    collect() {
      this.set(state.unauthenticatedConnections());
    },
  });
  new Gauge({
    name: 's3sftp_auth_verifications',
    help: 'Password verifications running (state="running") and waiting (state="queued") now.',
    labelNames: ['state'],
    registers,
    collect() {
      const { running, queued } = state.verifications();
      this.set({ state: 'running' }, running);
      this.set({ state: 'queued' }, queued);
    },
  });
  return {
    events: {
      connectionRefused: (reason) => refused.inc({ reason }),
      verifyQueueFull: () => queueFull.inc(),
    },
    banned: () => bans.inc(),
  };
}
