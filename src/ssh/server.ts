/**
 * The SSH front door: ssh2 server, authentication against the user table,
 * one SFTP session per subsystem request and one SCP session per exec
 * request. Storage for a user comes from an injected factory, so this module
 * knows nothing of S3.
 */
import { randomUUID } from 'node:crypto';
import { createServer as createNetServer, type AddressInfo, type Server as NetServer } from 'node:net';
import ssh2 from 'ssh2';
import type { AuthContext, Connection, Session } from 'ssh2';
import type { Logger } from 'pino';
import type { Storage } from '../storage/storage.ts';
import type { User, UserSource } from '../users/user.ts';
import type { SetstatMode } from '../config/types.ts';
import { PasswordVerifier } from '../auth/verifier.ts';
import type { Socket } from 'node:net';
import { ConnectionLimits, type LimitReason, type Ticket } from './connection-limits.ts';
import { Defender, type Offence } from './defender.ts';
import { CidrSet } from './cidr.ts';
import { restrictHostKeyOffer } from './crypto-policy.ts';
import { acceptRepeatedUserauth, installedSsh2Version, PATCHED_SSH2_VERSION, userauthPatchApplies } from './ssh2-userauth.ts';
import { matchPublicKey } from '../auth/public-key.ts';
import { SftpSession } from '../sftp/session.ts';
import type { SessionDeps, SessionEvents } from '../session/types.ts';
import { auditEvents, combineEvents } from '../session/audit.ts';
import { advertiseExtensions, containParserErrors, sendExitStatus } from '../sftp/channel-quirks.ts';
import { widenReceiveWindow } from './ssh2-window.ts';
import { refuseNonUtf8Paths } from '../sftp/utf8-paths.ts';
import { frameWriteRequests } from '../sftp/write-requests.ts';
import { ScpSession } from '../scp/session.ts';
import type { FlowControl } from '../sftp/flow-control.ts';
import { policyChanged, withLivePermissions } from './live-policy.ts';
import { ChecksumSession, checksumCommandName } from '../exec/checksum.ts';
import { acceptWithProxyProtocol, TrustedProxies } from './proxy-protocol.ts';
import { coalesceWrites } from './coalesce-writes.ts';
import { destroyIfLingering, isKeepaliveTimeout, keepaliveServerOptions, type KeepaliveSettings } from './keepalive.ts';

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
  /** `user`: the session's username (for the opt-in per-user label). */
  sessionOpened?(user?: string): void;
  sessionClosed?(user?: string): void;
  /** A connection was refused or closed by a limit, a ban or the login grace time (hardening). */
  connectionRefused?(reason: LimitReason | 'banned' | 'channels-per-connection'): void;
  /** A password check failed at once because the verification queue was full. */
  verifyQueueFull?(): void;
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
  /** Hardening (docs/security.md); each has a permissive default when left out. */
  limits?: ConnectionLimits;
  defender?: Defender;
  verifier?: PasswordVerifier;
  /** ssh2's `algorithms` option (see ssh/crypto-policy.ts); ssh2's defaults when left out. */
  algorithms?: Record<string, string[]>;
  /** SFTP/SCP session channels one connection may have open at once. */
  maxChannelsPerConnection?: number;
  /** Peers whose PROXY protocol header is read (proxyProtocol.trustedCIDRs); none by default. */
  proxyTrustedCIDRs?: readonly string[];
  /** SSH keepalives (keepalive.*); ssh2's server sends them. */
  keepalive?: KeepaliveSettings;
  /** Bounded memory per SFTP channel and per server (sftp/flow-control.ts); none when left out. */
  flowControl?: FlowControl;
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
  /** The user as authenticated: a later change of where its files live ends the connection (live-policy.ts). */
  user?: User;
  /** The connection's logger: conn id and remote address, plus the user once authenticated. */
  log: Logger;
  username?: string;
  sessions: Set<ProtocolSession>;
  /** The source address, for the defender and spec.allowedCIDRs. */
  ip: string;
  /** Session channels open now, for maxChannelsPerConnection. */
  channels: number;
  ticket?: Ticket;
  /** Aborted when the connection closes: its queued password check is dropped. */
  gone: AbortController;
}

/** What draining and disconnects need from an SFTP or SCP session. */
type ProtocolSession = Pick<SftpSession, 'busy' | 'close'>;

export class SshServer {
  readonly #opts: SshServerOptions;
  readonly #server: InstanceType<typeof Server>;
  /** The listening socket; ours rather than ssh2's so a PROXY header is read before ssh2 sees a byte. */
  readonly #net: NetServer;
  readonly #live = new Set<LiveConnection>();
  readonly #unsubscribe: () => void;
  #drain: Promise<void> | undefined;
  #drainDeadline = Infinity;
  #wakeDrain: (() => void) | undefined;
  readonly #limits: ConnectionLimits;
  readonly #defender: Defender;
  readonly #verifier: PasswordVerifier;
  /** The admission ticket of each socket, from the socket hook to ssh2's 'connection'. */
  readonly #tickets = new WeakMap<Socket, Ticket>();
  /** Parsed spec.allowedCIDRs, per list (users are immutable; the same array is reused). */
  readonly #allowed = new WeakMap<readonly string[], CidrSet>();

  constructor(opts: SshServerOptions) {
    this.#opts = opts;
    this.#limits = opts.limits ?? new ConnectionLimits({ loginGraceTimeMs: 0, maxUnauthenticated: Infinity, maxUnauthenticatedPerSource: Infinity, maxConnectionsPerUser: 0, maxConnectionsPerSource: 0 });
    this.#defender = opts.defender ?? new Defender({ enabled: false, threshold: Infinity, observationTimeMs: 0, banTimeMs: 0, trustedCIDRs: [] });
    this.#verifier = opts.verifier ?? new PasswordVerifier({ concurrency: 2, queueLimit: 64, knownHashes: () => passwordHashes(opts.users) });
    this.#server = new Server(
      { hostKeys: opts.hostKeys, ident: 's3sftp', ...(opts.algorithms ? { algorithms: opts.algorithms } : {}), ...keepaliveServerOptions(opts.keepalive) },
      (client, info) => this.#onConnection(client, info.ip, info.port),
    );
    this.#server.on('error', (err: Error) => opts.log.error({ err }, 'ssh server error'));
    const trusted = new TrustedProxies(opts.proxyTrustedCIDRs ?? []);
    // We own the listener: a PROXY header (from a trusted balancer) is read before ssh2 sees the
    // socket, and limits, bans and the grace time act on the TCP socket with the real client
    // address, so they also catch clients that never send a version line.
    this.#net = createNetServer((socket) =>
      acceptWithProxyProtocol(
        socket,
        {
          trusted,
          onRefused: (s, reason) => opts.log.warn({ remote: `${s.remoteAddress}:${s.remotePort}` }, `connection refused: ${reason}`),
        },
        (ready) => {
          if (!this.#admit(ready)) return;
          coalesceWrites(ready);
          this.#server.injectSocket(ready);
        },
      ),
    );
    if (!userauthPatchApplies) {
      opts.log.warn({ installed: installedSsh2Version, patched: PATCHED_SSH2_VERSION }, 'ssh2 is not the version the userauth patch was written for: clients that try a key and then a password may be disconnected');
    }
    this.#unsubscribe = opts.users.onChange((username) => {
      this.#verifier.usersChanged();
      this.#revoke(username);
    });
    void this.#verifier.warm().catch((err: unknown) => opts.log.warn({ err }, 'could not prepare the dummy password hash'));
  }

  /** Before the SSH handshake: refuse banned sources and connections over the limits, start the grace timer. */
  #admit(socket: Socket): boolean {
    const ip = socket.remoteAddress ?? '';
    const refuse = (reason: LimitReason | 'banned', offence?: Offence) => {
      this.#opts.log.info({ remote: ip, reason }, 'connection refused');
      this.#opts.events?.connectionRefused?.(reason);
      if (offence) this.#defender.record(ip, offence);
      socket.destroy();
      return false;
    };
    if (this.#defender.isBanned(ip)) return refuse('banned');
    const ticket = this.#limits.admit(ip, () => refuse('login-grace-time', 'grace-time'));
    if (typeof ticket === 'string') return refuse(ticket, 'limit-exceeded');
    this.#tickets.set(socket, ticket);
    socket.once('close', () => ticket.closed());
    return true;
  }

  listen(port: number, host: string): Promise<AddressInfo> {
    return new Promise((resolve, reject) => {
      this.#net.once('error', reject);
      this.#net.listen(port, host, () => {
        this.#net.off('error', reject);
        this.#net.on('error', (err: Error) => this.#opts.log.error({ err }, 'ssh listener error'));
        resolve(this.#net.address() as AddressInfo);
      });
    });
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
    const allClosed = new Promise<void>((resolve) => this.#net.close(() => resolve()));
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

  /** Stops accepting connections and ends the live ones. */
  async close(): Promise<void> {
    this.#unsubscribe();
    const closed = new Promise<void>((resolve) => this.#net.close(() => resolve()));
    for (const conn of this.#live) conn.client.end();
    await closed;
    await this.#verifier.close();
  }

  #onConnection(client: Connection, ip: string, port: number): void {
    const id = randomUUID().slice(0, 8);
    const conn: LiveConnection = { id, client, log: this.#opts.log.child({ conn: id, remote: `${ip}:${port}` }), sessions: new Set(), ip, channels: 0, gone: new AbortController() };
    conn.ticket = this.#tickets.get((client as unknown as { _sock: Socket })._sock);
    const log = conn.log;
    this.#live.add(conn);
    acceptRepeatedUserauth(client);
    if (this.#opts.algorithms?.serverHostKey) restrictHostKeyOffer(client, this.#opts.algorithms.serverHostKey);
    log.debug('connection opened');
    let failures = 0;

    client.on('authentication', (ctx) => {
      this.#authenticate(ctx, conn)
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
            const over = conn.ticket?.authenticated(result.username);
            if (over) {
              log.warn({ user: result.username, reason: over }, 'connection limit reached: closing the connection');
              this.#opts.events?.connectionRefused?.(over);
              ctx.reject([]);
              client.end();
              return;
            }
            conn.credential = credential;
            conn.username = result.username;
            conn.user = result;
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
        if (conn.channels >= (this.#opts.maxChannelsPerConnection ?? Infinity)) {
          conn.log.info({ channels: conn.channels }, 'too many channels on one connection: refused a new one');
          this.#opts.events?.connectionRefused?.('channels-per-connection');
          reject();
          return;
        }
        conn.channels++;
        const session = accept();
        session.once('close', () => conn.channels--);
        this.#onSession(session, conn);
      });
    });
    client.on('error', (err: Error) => {
      if (isKeepaliveTimeout(err)) {
        log.info('client stopped answering keepalives: ending the connection');
        destroyIfLingering(client);
        return;
      }
      log.debug({ err: err.message }, 'connection error');
    });
    client.on('close', () => {
      conn.gone.abort();
      this.#live.delete(conn);
      for (const s of conn.sessions) void s.close();
      conn.sessions.clear();
      conn.log.debug('connection closed');
    });
  }

  /** The user on success; 'key-acceptable' when a client only asks whether a key would do. */
  async #authenticate(ctx: AuthContext, conn: LiveConnection): Promise<User | 'key-acceptable' | undefined> {
    const log = conn.log;
    if (ctx.method === 'none') return undefined;
    const user = this.#opts.users.get(ctx.username);
    const ok = await this.#check(ctx, user, conn);
    if (ctx.method === 'publickey' && !ctx.signature && ok) return 'key-acceptable';
    this.#opts.events?.authAttempt?.({ method: ctx.method, ok });
    if (!ok) {
      log.info({ user: ctx.username, method: ctx.method }, 'authentication failed');
      // A key the client merely asks about is not scored (OpenSSH clients offer every key they
      // have); a wrong password or a bad signature is.
      const query = ctx.method === 'publickey' && !ctx.signature;
      if (!query && this.#defender.record(conn.ip, 'login-failed')) conn.client.end();
      await delay(this.#opts.failureDelayMs ?? FAILURE_DELAY_MS);
      return undefined;
    }
    return user;
  }

  /** True when the source address may log in as this user (spec.allowedCIDRs, when set). */
  #fromAllowedAddress(user: User, ip: string): boolean {
    const list = user.allowedCIDRs;
    if (!list || list.length === 0) return true;
    let set = this.#allowed.get(list);
    if (!set) this.#allowed.set(list, (set = new CidrSet(list)));
    return set.has(ip);
  }

  async #check(ctx: AuthContext, user: User | undefined, conn: LiveConnection): Promise<boolean> {
    const ip = conn.ip;
    if (ctx.method === 'password') {
      // Every outcome costs one verification of the same cost: the user's own hash when it has
      // one (answering 'wrong' when disabled or from the wrong address), else a dummy.
      const usable = user !== undefined && !user.disabled && this.#fromAllowedAddress(user, ip);
      const outcome = await this.#verifier.check({ password: ctx.password, hash: user?.passwordHash, usable, source: ip, signal: conn.gone.signal });
      if (outcome === 'busy') this.#opts.events?.verifyQueueFull?.();
      return outcome === 'ok';
    }
    if (ctx.method === 'publickey') {
      if (!user || user.disabled || !this.#fromAllowedAddress(user, ip)) return false;
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
      // Permissions are re-read at each operation, so a change applies to open sessions (live-policy.ts).
      user: withLivePermissions(user, () => this.#opts.users.get(user.username)),
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
      refuseNonUtf8Paths(sftp, () => log.info({ user: user.username }, 'refused a request with a file name that is not valid UTF-8'));
      // In front of the name check: WRITEs are taken out whole, without ssh2's copy (write-requests.ts).
      frameWriteRequests(sftp);
      // Contains a throw anywhere in the parser chain below it: this channel closes, not the connection.
      containParserErrors(sftp);
      // Before any data can arrive (all of this runs synchronously): uploads are window-bound with
      // ssh2's 2 MiB (see ssh2-window.ts); flow control widens it and holds it while memory is over a bound.
      const flow = this.#opts.flowControl?.attach(sftp, log);
      if (!flow) widenReceiveWindow(sftp, log);
      const sftpSession = new SftpSession({ sftp, ...this.#sessionDeps(user, log) });
      conn.sessions.add(sftpSession);
      this.#opts.events?.sessionOpened?.(user.username);
      // OpenSSH's `sftp -b` waits for us to close after it sends EOF.
      sftp.on('end', () => {
        sendExitStatus(sftp, 0);
        sftp.end();
      });
      sftp.on('close', () => {
        conn.sessions.delete(sftpSession);
        flow?.detach();
        this.#opts.events?.sessionClosed?.(user.username);
        void sftpSession.close();
      });
    });
    const refuse = (what: string) => (_accept: unknown, reject?: () => void) => {
      log.debug({ what }, 'refused session request');
      reject?.();
    };
    session.on('shell', refuse('shell'));
    // Legacy SCP (`scp -O`, older clients) runs `scp -t`/`scp -f` through exec, rclone runs md5sum/sha1sum;
    // any other command is refused (by the SCP parser, which explains there is no shell).
    session.on('exec', (accept, reject, info) => {
      const user = this.#channelUser(conn, reject);
      if (!user) return;
      const channel = accept();
      if (!channel) return; // the session closed while we decided
      const deps = { channel, command: info.command, ...this.#sessionDeps(user, log) };
      // md5sum/sha1sum/sha256sum (rclone's hash checks) have their own module; everything else is scp's to run or refuse.
      const exec = checksumCommandName(info.command) ? new ChecksumSession(deps) : new ScpSession(deps);
      conn.sessions.add(exec);
      this.#opts.events?.sessionOpened?.(user.username);
      void exec.run().finally(() => {
        conn.sessions.delete(exec);
        this.#opts.events?.sessionClosed?.(user.username);
      });
    });
    session.on('pty', (accept) => accept?.());
    session.on('env', (accept) => accept?.());
  }

  /**
   * Ends the connections of a user that their credential no longer admits (removed, disabled, key or
   * password changed), or whose files moved (bucket, prefix, role...) or address is no longer allowed.
   */
  #revoke(username: string): void {
    const now = this.#opts.users.get(username);
    for (const conn of this.#live) {
      if (conn.username !== username || !conn.credential) continue;
      if (!this.#authenticates(username, conn.credential)) {
        conn.log.info({ method: conn.credential.method }, 'user removed or disabled, or its key or password changed: ending the connection');
        conn.client.end();
        continue;
      }
      const why = conn.user && now ? policyChanged(conn.user, now, conn.ip) : undefined;
      if (why) {
        conn.log.info({ reason: why }, 'user changed where its files live or where it may log in from: ending the connection');
        conn.client.end();
      }
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

/** The password hashes of the loaded users, for the dummy hash's parameters. */
function* passwordHashes(users: UserSource): Iterable<string> {
  for (const u of users.all()) if (u.passwordHash) yield u.passwordHash;
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

