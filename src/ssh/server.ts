/**
 * The SSH front door: ssh2 server, authentication against the user table,
 * and one SFTP session per subsystem request. Storage for a user comes from an
 * injected factory, so this module knows nothing of S3.
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
import { SftpSession, type SessionEvents } from '../sftp/session.ts';
import { advertiseExtensions, sendExitStatus } from '../sftp/channel-quirks.ts';

const { Server } = ssh2;

/** Failed attempts allowed per connection before it is closed. */
const MAX_AUTH_FAILURES = 6;
/** Delay before answering a failed attempt: slows down password guessing. */
const FAILURE_DELAY_MS = 300;

export interface SshServerOptions {
  hostKeys: Buffer[];
  users: UserSource;
  storageFor: (user: User) => Storage;
  setstatMode: SetstatMode;
  log: Logger;
  events?: SessionEvents & {
    authAttempt?(a: { method: string; ok: boolean }): void;
    sessionOpened?(): void;
    sessionClosed?(): void;
  };
  failureDelayMs?: number;
}

interface LiveConnection {
  id: string;
  client: Connection;
  username?: string;
  sessions: Set<SftpSession>;
}

export class SshServer {
  readonly #opts: SshServerOptions;
  readonly #server: InstanceType<typeof Server>;
  readonly #live = new Set<LiveConnection>();
  readonly #unsubscribe: () => void;

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

  /** Stops accepting connections; with `force`, also ends the live ones. */
  async close(force = true): Promise<void> {
    this.#unsubscribe();
    const closed = new Promise<void>((resolve) => this.#server.close(() => resolve()));
    if (force) for (const conn of this.#live) conn.client.end();
    await closed;
  }

  #onConnection(client: Connection, ip: string, port: number): void {
    const conn: LiveConnection = { id: randomUUID().slice(0, 8), client, sessions: new Set() };
    const log = this.#opts.log.child({ conn: conn.id, remote: `${ip}:${port}` });
    this.#live.add(conn);
    log.debug('connection opened');
    let failures = 0;

    client.on('authentication', (ctx) => {
      this.#authenticate(ctx, log)
        .then((result) => {
          if (result === 'key-acceptable') return ctx.accept();
          if (result) {
            conn.username = result.username;
            log.info({ user: result.username, method: ctx.method }, 'authenticated');
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
      client.on('session', (accept) => this.#onSession(accept(), conn, log));
    });
    client.on('error', (err: Error) => log.debug({ err: err.message }, 'connection error'));
    client.on('close', () => {
      this.#live.delete(conn);
      for (const s of conn.sessions) void s.close();
      conn.sessions.clear();
      log.debug('connection closed');
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

  #onSession(session: Session, conn: LiveConnection, log: Logger): void {
    session.on('sftp', (accept) => {
      const user = conn.username ? this.#opts.users.get(conn.username) : undefined;
      if (!user || user.disabled) {
        conn.client.end();
        return;
      }
      const sftp = accept();
      advertiseExtensions(sftp, { 'posix-rename@openssh.com': '1' });
      const sessionLog = log.child({ user: user.username });
      const sftpSession = new SftpSession({
        sftp,
        storage: this.#opts.storageFor(user),
        user,
        setstatMode: this.#opts.setstatMode,
        log: sessionLog,
        events: this.#opts.events,
      });
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
    session.on('exec', refuse('exec'));
    session.on('pty', (accept) => accept?.());
    session.on('env', (accept) => accept?.());
  }

  /** Ends the connections of a user who was removed or disabled. */
  #revoke(username: string): void {
    const user = this.#opts.users.get(username);
    if (user && !user.disabled) return;
    for (const conn of this.#live) {
      if (conn.username === username) {
        this.#opts.log.info({ user: username }, 'user removed or disabled: ending the connection');
        conn.client.end();
      }
    }
  }
}

function delay(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

export type { ServerChannel };
