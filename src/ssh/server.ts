/**
 * The SSH front door: ssh2 server, authentication against the user table,
 * one SFTP session per subsystem request and one SCP session per exec
 * request. Storage for a user comes from an injected factory, so this module
 * knows nothing of S3.
 */
import { randomUUID } from 'node:crypto';
import type { AddressInfo } from 'node:net';
import ssh2 from 'ssh2';
import type { AuthContext, Connection, ServerChannel, Session } from 'ssh2';
import type { Logger } from 'pino';
import type { Storage } from '../storage/storage.ts';
import type { User, UserSource } from '../users/user.ts';
import type { SetstatMode } from '../config/types.ts';
import { verifyPassword } from '../auth/password.ts';
import { matchPublicKey } from '../auth/public-key.ts';
import { SftpSession, type SessionDeps, type SessionEvents } from '../sftp/session.ts';
import { auditEvents, combineEvents } from '../sftp/audit.ts';
import { advertiseExtensions, containParserErrors, sendExitStatus } from '../sftp/channel-quirks.ts';
import { ScpSession } from '../scp/session.ts';

const { Server } = ssh2;

/** Failed attempts allowed per connection before it is closed. */
const MAX_AUTH_FAILURES = 6;
/** Delay before answering a failed attempt: slows down password guessing. */
const FAILURE_DELAY_MS = 300;
/** While draining, a connection with nothing open for this long is ended. */
const DRAIN_IDLE_MS = 1000;
/** How often a drain looks for connections that became idle. */
const DRAIN_POLL_MS = 200;
/** After the grace period, how long aborting the remaining uploads may take. */
const DRAIN_ABORT_WAIT_MS = 8000;

/** What the server reports about logins and sessions, on top of each session's events. */
export interface SshServerEvents extends SessionEvents {
  authAttempt?(a: { method: string; ok: boolean }): void;
  sessionOpened?(): void;
  sessionClosed?(): void;
}

export interface SshServerOptions {
  hostKeys: Buffer[];
  users: UserSource;
  storageFor: (user: User) => Storage;
  setstatMode: SetstatMode;
  log: Logger;
  events?: SshServerEvents;
  failureDelayMs?: number;
  /** While draining, how long a connection must have nothing open before it is ended. */
  drainIdleMs?: number;
}

/**
 * How a connection authenticated: the offered public key, or the hash the password was checked
 * against (the password itself is never kept). A change of the user ends the connection unless
 * this would still authenticate.
 */
type Credential = { method: 'publickey'; algo: string; data: Buffer } | { method: 'password'; hash: string };

interface LiveConnection {
  id: string;
  client: Connection;
  credential?: Credential;
  /** The connection's logger: conn id and remote address, plus the user once authenticated. */
  log: Logger;
  username?: string;
  sessions: Set<ProtocolSession>;
}

/** What draining and disconnects need from an SFTP or SCP session. */
type ProtocolSession = Pick<SftpSession, 'busy' | 'close'>;

export class SshServer {
  readonly #opts: SshServerOptions;
  readonly #server: InstanceType<typeof Server>;
  readonly #live = new Set<LiveConnection>();
  readonly #unsubscribe: () => void;
  #drain: Promise<void> | undefined;
  #drainDeadline = Infinity;
  #wakeDrain: (() => void) | undefined;

  constructor(opts: SshServerOptions) {
    this.#opts = opts;
    this.#server = new Server({ hostKeys: opts.hostKeys, ident: 's3sftp' }, (client, info) =>
      this.#onConnection(client, info.ip, info.port),
    );
    this.#server.on('error', (err: Error) => opts.log.error({ err }, 'ssh server error'));
    this.#unsubscribe = opts.users.onChange((username) => this.#revoke(username));
  }

  listen(port: number, host: string): Promise<AddressInfo> {
    return new Promise((resolve, reject) => {
      this.#server.once('error', reject);
      this.#server.listen(port, host, () => {
        this.#server.off('error', reject);
        resolve(this.#server.address() as AddressInfo);
      });
    });
  }

  get connectionCount(): number {
    return this.#live.size;
  }

  /** True once drain() was called: new connections, sessions and channels are refused. */
  get draining(): boolean {
    return this.#drain !== undefined;
  }

  /**
   * Graceful stop. Refuses new connections (the listening socket is closed)
   * and new sessions on live ones; lets live sessions finish what they have
   * open, ending each connection once it has been idle for a moment; after
   * `graceMs`, ends the rest, aborting their uploads, and resolves once those
   * aborts are done. Calling it again can only shorten the deadline.
   */
  drain(graceMs: number): Promise<void> {
    const deadline = Date.now() + Math.max(0, graceMs);
    if (deadline < this.#drainDeadline) {
      this.#drainDeadline = deadline;
      this.#wakeDrain?.();
    }
    this.#drain ??= this.#runDrain();
    return this.#drain;
  }

  async #runDrain(): Promise<void> {
    const log = this.#opts.log;
    const idleMs = this.#opts.drainIdleMs ?? DRAIN_IDLE_MS;
    // net.Server calls back once the last connection has closed.
    const allClosed = new Promise<void>((resolve) => this.#server.close(() => resolve()));
    log.info({ connections: this.#live.size }, 'draining: new connections refused, open transfers may finish');
    const idleSince = new Map<LiveConnection, number>();
    while (this.#live.size > 0 && Date.now() < this.#drainDeadline) {
      const now = Date.now();
      for (const conn of this.#live) {
        if ([...conn.sessions].some((s) => s.busy)) {
          idleSince.delete(conn);
          continue;
        }
        const since = idleSince.get(conn) ?? now;
        idleSince.set(conn, since);
        if (now - since >= idleMs) {
          conn.log.debug('draining: connection idle, ending it');
          conn.client.end();
        }
      }
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, Math.min(DRAIN_POLL_MS, Math.max(0, this.#drainDeadline - Date.now())));
        this.#wakeDrain = () => {
          clearTimeout(timer);
          resolve();
        };
      });
    }
    this.#wakeDrain = undefined;
    if (this.#live.size > 0) {
      log.warn({ connections: this.#live.size }, 'grace period over: ending connections and aborting their uploads');
      const aborts: Promise<void>[] = [];
      for (const conn of this.#live) {
        for (const s of conn.sessions) aborts.push(s.close());
        conn.client.end();
      }
      await settleWithin(Promise.all(aborts), DRAIN_ABORT_WAIT_MS);
    }
    await settleWithin(allClosed, DRAIN_ABORT_WAIT_MS);
    this.#unsubscribe();
    log.info('drained');
  }

  /** Stops accepting connections; with `force`, also ends the live ones. */
  async close(force = true): Promise<void> {
    this.#unsubscribe();
    const closed = new Promise<void>((resolve) => this.#server.close(() => resolve()));
    if (force) for (const conn of this.#live) conn.client.end();
    await closed;
  }

  #onConnection(client: Connection, ip: string, port: number): void {
    const id = randomUUID().slice(0, 8);
    const conn: LiveConnection = { id, client, log: this.#opts.log.child({ conn: id, remote: `${ip}:${port}` }), sessions: new Set() };
    const log = conn.log;
    this.#live.add(conn);
    log.debug('connection opened');
    let failures = 0;

    client.on('authentication', (ctx) => {
      this.#authenticate(ctx, log)
        .then((result) => {
          if (result === 'key-acceptable') return ctx.accept();
          if (result) {
            const credential: Credential =
              ctx.method === 'publickey'
                ? { method: 'publickey', algo: ctx.key.algo, data: Buffer.from(ctx.key.data) }
                : { method: 'password', hash: result.passwordHash ?? '' };
            // The user may have changed while the password was being verified.
            if (!this.#authenticates(result.username, credential)) {
              log.info({ user: result.username, method: ctx.method }, 'credentials changed during authentication');
              ctx.reject(['publickey', 'password']);
              return;
            }
            conn.credential = credential;
            conn.username = result.username;
            conn.log = log.child({ user: result.username });
            conn.log.info({ method: ctx.method }, 'authenticated');
            ctx.accept();
            return;
          }
          failures += ctx.method === 'none' ? 0 : 1;
          if (failures >= MAX_AUTH_FAILURES) {
            log.warn({ user: ctx.username }, 'too many failed authentication attempts');
            client.end();
            return;
          }
          ctx.reject(['publickey', 'password']);
        })
        .catch((err: unknown) => {
          log.error({ err }, 'authentication error');
          ctx.reject(['publickey', 'password']);
        });
    });
    client.on('ready', () => {
      client.on('session', (accept, reject) => {
        if (this.draining) {
          conn.log.debug('draining: refused a new session');
          reject();
          return;
        }
        this.#onSession(accept(), conn);
      });
    });
    client.on('error', (err: Error) => log.debug({ err: err.message }, 'connection error'));
    client.on('close', () => {
      this.#live.delete(conn);
      for (const s of conn.sessions) void s.close();
      conn.sessions.clear();
      conn.log.debug('connection closed');
    });
  }

  /** The user on success; 'key-acceptable' when a client only asks whether a key would do. */
  async #authenticate(ctx: AuthContext, log: Logger): Promise<User | 'key-acceptable' | undefined> {
    if (ctx.method === 'none') return undefined;
    const user = this.#opts.users.get(ctx.username);
    const ok = await this.#check(ctx, user);
    if (ctx.method === 'publickey' && !ctx.signature && ok) return 'key-acceptable';
    this.#opts.events?.authAttempt?.({ method: ctx.method, ok });
    if (!ok) {
      log.info({ user: ctx.username, method: ctx.method }, 'authentication failed');
      await delay(this.#opts.failureDelayMs ?? FAILURE_DELAY_MS);
      return undefined;
    }
    return user;
  }

  async #check(ctx: AuthContext, user: User | undefined): Promise<boolean> {
    if (ctx.method === 'password') {
      if (!user || user.disabled || !user.passwordHash) return false;
      return verifyPassword(ctx.password, user.passwordHash);
    }
    if (ctx.method === 'publickey') {
      if (!user || user.disabled) return false;
      const key = matchPublicKey(user, ctx.key);
      if (!key) return false;
      if (!ctx.signature) return true;
      return key.verify(ctx.blob as Buffer, ctx.signature, ctx.hashAlgo) === true;
    }
    return false;
  }

  /**
   * The user a new SFTP or SCP channel runs as, or undefined when it must not open: the
   * connection is ended if its credential no longer authenticates (revoked meanwhile), and
   * the request is refused while draining.
   */
  #channelUser(conn: LiveConnection, reject: (() => void) | undefined): User | undefined {
    const user = conn.username ? this.#opts.users.get(conn.username) : undefined;
    if (!user || !conn.credential || !this.#authenticates(user.username, conn.credential)) {
      conn.client.end();
      return undefined;
    }
    if (this.draining) {
      reject?.();
      return undefined;
    }
    return user;
  }

  /** What an SFTP or SCP session needs: the user's storage, settings, log and events (audit + metrics). */
  #sessionDeps(user: User, log: Logger): SessionDeps {
    return {
      storage: this.#opts.storageFor(user),
      user,
      setstatMode: this.#opts.setstatMode,
      log,
      events: combineEvents(auditEvents(log), this.#opts.events),
    };
  }

  #onSession(session: Session, conn: LiveConnection): void {
    const log = conn.log;
    session.on('sftp', (accept, reject) => {
      const user = this.#channelUser(conn, reject);
      if (!user) return;
      const sftp = accept();
      // ssh2 emits 'error' for a malformed packet, then closes the channel; without a
      // listener the emit would throw inside ssh2's parser instead.
      sftp.on('error', (err: Error) => log.info({ err: err.message, user: user.username }, 'sftp protocol error: closing the channel'));
      advertiseExtensions(sftp, { 'posix-rename@openssh.com': '1' });
      containParserErrors(sftp);
      const sftpSession = new SftpSession({ sftp, ...this.#sessionDeps(user, log) });
      conn.sessions.add(sftpSession);
      this.#opts.events?.sessionOpened?.();
      // OpenSSH's `sftp -b` waits for us to close after it sends EOF.
      sftp.on('end', () => {
        sendExitStatus(sftp, 0);
        sftp.end();
      });
      sftp.on('close', () => {
        conn.sessions.delete(sftpSession);
        this.#opts.events?.sessionClosed?.();
        void sftpSession.close();
      });
    });
    const refuse = (what: string) => (accept: unknown, reject?: () => void) => {
      log.debug({ what }, 'refused session request');
      reject?.();
    };
    session.on('shell', refuse('shell'));
    // Legacy SCP (`scp -O`, older clients) runs `scp -t`/`scp -f` through exec; any other command is refused there.
    session.on('exec', (accept, reject, info) => {
      const user = this.#channelUser(conn, reject);
      if (!user) return;
      const channel = accept();
      if (!channel) return; // the session closed while we decided
      const scp = new ScpSession({ channel, command: info.command, ...this.#sessionDeps(user, log) });
      conn.sessions.add(scp);
      this.#opts.events?.sessionOpened?.();
      void scp.run().finally(() => {
        conn.sessions.delete(scp);
        this.#opts.events?.sessionClosed?.();
      });
    });
    session.on('pty', (accept) => accept?.());
    session.on('env', (accept) => accept?.());
  }

  /** Ends the connections of a user who was removed or disabled. */
  /** Ends the connections of a user that their credential no longer admits (removed, disabled, key or password changed). */
  #revoke(username: string): void {
    for (const conn of this.#live) {
      if (conn.username !== username || !conn.credential) continue;
      if (this.#authenticates(username, conn.credential)) continue;
      conn.log.info({ method: conn.credential.method }, 'user removed or disabled, or its key or password changed: ending the connection');
      conn.client.end();
    }
  }

  /** True when the current user would still accept this credential. */
  #authenticates(username: string, credential: Credential): boolean {
    const user = this.#opts.users.get(username);
    if (!user || user.disabled) return false;
    if (credential.method === 'password') return user.passwordHash !== undefined && user.passwordHash === credential.hash;
    return matchPublicKey(user, credential) !== undefined;
  }
}

function delay(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

/** Waits for `promise` (never rejects) at most `ms`. */
async function settleWithin(promise: Promise<unknown>, ms: number): Promise<void> {
  let timer: NodeJS.Timeout | undefined;
  await Promise.race([promise.catch(() => undefined), new Promise((r) => (timer = setTimeout(r, ms)))]);
  clearTimeout(timer);
}

export type { ServerChannel };
