/**
 * The fast middle layer of tests: the real SSH server class (src/ssh/server.ts)
 * with the real SFTP and SCP sessions, on 127.0.0.1 port 0 in this process,
 * over an in-memory store (MemoryStorage, which passes the S3 conformance
 * suite) and an in-memory user table, driven by a real ssh2 client. No S3 and
 * no external programs: protocol behaviour is checked in milliseconds, and
 * test/integration checks the same against Swift and real clients.
 */
import { once } from 'node:events';
import pino from 'pino';
import ssh2 from 'ssh2';
import type { ClientChannel, SFTPWrapper } from 'ssh2';
import type { SetstatMode } from '../../src/config/types.ts';
import { SshServer, type SshServerEvents } from '../../src/ssh/server.ts';
import { FlowControl } from '../../src/sftp/flow-control.ts';
import { generateEd25519 } from '../../src/ssh/keygen.ts';
import { MemoryBucket, MemoryStorage, type MemoryStorageOptions } from '../../src/storage/memory/memory-storage.ts';
import { MountedStorage } from '../../src/storage/mounts.ts';
import type { Storage } from '../../src/storage/storage.ts';
import { PERMISSIONS, type Permission, type User, type UserSource } from '../../src/users/user.ts';

const { Client } = ssh2;

/** A user table in memory; set() and remove() notify like a reloaded users directory. */
export class MemoryUserSource implements UserSource {
  readonly ready = true;
  readonly #users = new Map<string, User>();
  readonly #listeners = new Set<(username: string) => void>();

  get(username: string): User | undefined {
    return this.#users.get(username);
  }

  all(): User[] {
    return [...this.#users.values()];
  }

  set(user: User): void {
    this.#users.set(user.username, user);
    for (const listener of this.#listeners) listener(user.username);
  }

  remove(username: string): void {
    this.#users.delete(username);
    for (const listener of this.#listeners) listener(username);
  }

  onChange(listener: (username: string) => void): () => void {
    this.#listeners.add(listener);
    return () => this.#listeners.delete(listener);
  }

  async close(): Promise<void> {
    this.#listeners.clear();
  }
}

export interface InProcessUser {
  username: string;
  /** Default: every permission. */
  permissions?: readonly Permission[];
  /** Default: `<username>/`. */
  keyPrefix?: string;
  /** Virtual folders, each a MemoryStorage on its own prefix of the one bucket. */
  folders?: { path: string; keyPrefix: string; permissions: readonly Permission[] }[];
}

export interface InProcessOptions {
  users?: InProcessUser[];
  setstatMode?: SetstatMode;
  /** Passed to every user's MemoryStorage (rename mode, write window, page size, test seams). */
  storage?: Omit<MemoryStorageOptions, 'bucket' | 'keyPrefix'>;
  events?: SshServerEvents;
}

/** An exec channel with the exit status it received, even before anyone listened. */
export type ExecChannel = ClientChannel & { exitCode?: number };

export interface InProcessServer {
  port: number;
  /** The server itself, for drain() and the like. */
  ssh: SshServer;
  /** The store every user's storage shares. */
  bucket: MemoryBucket;
  users: MemoryUserSource;
  /** A fresh MemoryStorage on a user's prefix, to seed or inspect their files directly. */
  storageOf(username: string): MemoryStorage;
  /** Adds or replaces a user (the server sees it at once). */
  addUser(user: InProcessUser): void;
  /** An authenticated ssh2 client for a user; closed by stop(). */
  connect(username: string): Promise<InstanceType<typeof Client>>;
  /** A connected client's SFTP channel. */
  sftp(username: string): Promise<SFTPWrapper>;
  /** An exec channel (legacy SCP runs as `scp -t` / `scp -f`). */
  exec(username: string, command: string): Promise<ExecChannel>;
  stop(): Promise<void>;
}

/** One client key for every test user: authentication is not what these tests are about. */
const clientKey = generateEd25519();

export function userFor(spec: InProcessUser): User {
  return {
    username: spec.username,
    disabled: false,
    publicKeys: [clientKey.public],
    s3: { bucket: 'memory', keyPrefix: spec.keyPrefix ?? `${spec.username}/` },
    permissions: new Set(spec.permissions ?? PERMISSIONS),
    ...(spec.folders ? { folders: spec.folders.map((f) => ({ path: f.path, s3: { bucket: 'memory', keyPrefix: f.keyPrefix }, permissions: new Set(f.permissions) })) } : {}),
    source: 'test',
  };
}

export async function startInProcessServer(options: InProcessOptions = {}): Promise<InProcessServer> {
  const bucket = new MemoryBucket();
  const users = new MemoryUserSource();
  for (const spec of options.users ?? []) users.set(userFor(spec));
  const memoryAt = (keyPrefix: string) => new MemoryStorage({ ...options.storage, bucket, keyPrefix });
  const storageFor = (user: User) => memoryAt(user.s3.keyPrefix);
  // Virtual folders go through the same MountedStorage the server builds (src/server.ts).
  const sessionStorageFor = (user: User): Storage =>
    user.folders?.length ? new MountedStorage({ home: storageFor(user), homeListable: user.permissions.has('list'), mounts: user.folders.map((f) => ({ path: f.path, storage: memoryAt(f.s3.keyPrefix) })) }) : storageFor(user);
  const log = pino({ level: process.env.S3SFTP_TEST_LOG ?? 'silent' });
  const server = new SshServer({
    hostKeys: [Buffer.from(generateEd25519().private)],
    users,
    storageFor: sessionStorageFor,
    setstatMode: options.setstatMode ?? 2,
    log,
    failureDelayMs: 0,
    // A drain ends idle connections after this long; the default second only slows tests down.
    drainIdleMs: 50,
    // As the real server runs: every SFTP request passes the memory flow control (sftp/flow-control.ts).
    flowControl: new FlowControl({ maxQueuedWriteBytes: 32 * 2 ** 20 }),
    ...(options.events ? { events: options.events } : {}),
  });
  const { port } = await server.listen(0, '127.0.0.1');
  const clients = new Set<InstanceType<typeof Client>>();

  const connect = async (username: string) => {
    const client = new Client();
    clients.add(client);
    client.on('close', () => clients.delete(client));
    const ready = once(client, 'ready');
    client.connect({ host: '127.0.0.1', port, username, privateKey: clientKey.private, readyTimeout: 10_000 });
    await Promise.race([ready, once(client, 'error').then(([err]) => Promise.reject(err))]);
    return client;
  };

  return {
    port,
    ssh: server,
    bucket,
    users,
    storageOf: (username) => {
      const user = users.get(username);
      if (!user) throw new Error(`no user ${username}`);
      return storageFor(user);
    },
    addUser: (spec) => users.set(userFor(spec)),
    connect,
    async sftp(username) {
      const client = await connect(username);
      return new Promise((resolve, reject) => client.sftp((err, sftp) => (err ? reject(err) : resolve(sftp))));
    },
    async exec(username, command) {
      const client = await connect(username);
      return new Promise((resolve, reject) =>
        client.exec(command, (err, channel) => {
          if (err) return reject(err);
          // A command refused at once can have its exit status in the same read as the exec reply:
          // ssh2 emits 'exit' before the caller's await resumes, so it is kept here.
          const exec = channel as ExecChannel;
          channel.on('exit', (code: number) => (exec.exitCode = code));
          resolve(exec);
        }),
      );
    },
    async stop() {
      for (const client of clients) client.end();
      await server.close();
    },
  };
}
