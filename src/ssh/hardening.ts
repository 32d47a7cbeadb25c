/**
 * Builds the SSH server's hardening pieces from the configuration: connection
 * limits and login grace time, the defender, the password verification pool,
 * the offered algorithms, and their metrics and audit lines.
 */
import type { Logger } from 'pino';
import type { Registry } from 'prom-client';
import type { Config } from '../config/types.ts';
import type { UserSource } from '../users/user.ts';
import { PasswordVerifier } from '../auth/verifier.ts';
import { hardeningMetrics } from '../metrics/hardening.ts';
import { ConnectionLimits } from './connection-limits.ts';
import { serverAlgorithms } from './crypto-policy.ts';
import { Defender } from './defender.ts';
import type { SshServerEvents, SshServerOptions } from './server.ts';

type HardeningOptions = Pick<SshServerOptions, 'limits' | 'defender' | 'verifier' | 'algorithms' | 'maxChannelsPerConnection'>;

export function hardening(
  config: Pick<Config, 'ssh' | 'auth' | 'defender'>,
  users: UserSource,
  registry: Registry,
  log: Logger,
): { options: HardeningOptions; events: SshServerEvents } {
  const limits = new ConnectionLimits(config.ssh);
  const verifier = new PasswordVerifier({
    concurrency: config.auth.verifyConcurrency,
    queueLimit: config.auth.verifyQueue,
    knownHashes: function* () {
      for (const u of users.all()) if (u.passwordHash) yield u.passwordHash;
    },
  });
  let onBan: () => void = () => undefined;
  const audit = log.child({ component: 'defender' });
  const defender = new Defender({
    ...config.defender,
    onBan: ({ ip, score, until, offence }) => {
      // An audit line: who was banned, why and until when.
      audit.warn({ event: 'ban', remote: ip, score, offence, until: new Date(until).toISOString() }, 'source address banned');
      onBan();
    },
  });
  const metrics = hardeningMetrics(registry, {
    bannedSources: () => defender.bannedCount(),
    unauthenticatedConnections: () => limits.unauthenticated,
    verifications: () => verifier.load,
  });
  onBan = metrics.banned;
  return {
    options: {
      limits,
      defender,
      verifier,
      algorithms: serverAlgorithms(config.ssh.algorithms),
      maxChannelsPerConnection: config.ssh.maxChannelsPerConnection,
    },
    events: metrics.events,
  };
}
