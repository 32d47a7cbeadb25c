/**
 * A real S3-compatible server for tests and `make run`: OpenStack Swift (Debian packages) with the
 * s3api middleware, one replica, everything under one directory, every process a child of ours.
 *
 * Library: `startSwift()` → endpoint + keys + `stop()`.
 * CLI:     `node dev/swift.ts serve [--port 9000] [--dir DIR] [--bucket NAME] [--verbose]`
 *          prints one JSON line `{endpoint, region, accessKeyId, secretAccessKey, bucket, dir}` and
 *          runs until SIGINT/SIGTERM.
 *
 * Isolation from /etc/swift: every server gets an explicit config path and `swift_dir` (rings,
 * memcache.conf). swift.conf (hash prefix/suffix, storage policies, constraints) has a hard-coded
 * location in Swift and no env override, so each server is started through a small Python launcher
 * that calls `swift.common.utils.set_swift_dir()` and reloads constraints and policies before the
 * server modules are imported. /etc/swift is never read for anything that matters and never written.
 *
 * Lifetime: each child runs in its own process group and has PR_SET_PDEATHSIG=SIGKILL (set by the
 * launcher before exec), so it dies even if this Node process is SIGKILLed; `stop()` and a
 * process 'exit' handler kill the groups explicitly as well.
 */
import { execFile, spawn } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { rmSync } from 'node:fs';
import { mkdir, mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { createServer } from 'node:net';
import type { Server } from 'node:net';
import { tmpdir, userInfo } from 'node:os';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { promisify } from 'node:util';
import { CreateBucketCommand, ListBucketsCommand, S3Client } from '@aws-sdk/client-s3';

const execFileAsync = promisify(execFile);

/** Connection details of a running Swift s3api endpoint. */
export interface SwiftS3 {
  /** `http://127.0.0.1:PORT`, path-style only. */
  endpoint: string;
  region: 'us-east-1';
  accessKeyId: string;
  secretAccessKey: string;
  /** Directory holding config (`etc/`), data (`data/`) and nothing else of ours. */
  dir: string;
  /** Kills every child and removes the directory unless the caller supplied it. */
  stop(): Promise<void>;
}

/** Options for {@link startSwift}. */
export interface StartSwiftOptions {
  /** Keep config and data here (kept after stop; data survives restarts). Default: fresh temp dir. */
  dir?: string;
  /** Proxy (S3) port. Default: a free port. */
  port?: number;
  /** Receives every server log line, prefixed with the process name. */
  log?: (line: string) => void;
  /** Bound on the whole start-up. Default 60 s. */
  timeoutMs?: number;
  /**
   * More tempauth users, all admins of their account. S3 access key `account:user`, secret `key`
   * (tests use them as the keys a fake STS hands out). Default: only test:tester.
   */
  tempauthUsers?: TempauthUser[];
}

/** A Swift tempauth user; account and user are letters and digits only (tempauth splits on "_"). */
export interface TempauthUser {
  account: string;
  user: string;
  key: string;
}

const PYTHON = '/usr/bin/python3';
const MEMCACHED = '/usr/bin/memcached';
const ACCESS_KEY_ID = 'test:tester';
const PROBE_ACCESS_KEY_ID = 'ready:probe';
const SECRET_ACCESS_KEY = 'testing';
const REGION = 'us-east-1';
const LOG_TAIL_LINES = 200;
const TEMP_PREFIX = 's3sftp-swift-';
/** Holds the pid of the process that created a temp dir, so a later run can sweep it. */
const OWNER_FILE = 'owner.pid';

/** Children of every live instance, killed synchronously if the process exits without stop(). */
const liveGroups = new Set<number>();
const liveTempDirs = new Set<string>();
let exitHandlerInstalled = false;

function installExitHandler(): void {
  if (exitHandlerInstalled) return;
  exitHandlerInstalled = true;
  process.on('exit', () => {
    for (const pgid of liveGroups) killGroup(pgid, 'SIGKILL');
    for (const dir of liveTempDirs) {
      try {
        rmSync(dir, { recursive: true, force: true });
      } catch {
        // best effort at exit
      }
    }
  });
}

function killGroup(pgid: number, signal: NodeJS.Signals): void {
  try {
    process.kill(-pgid, signal);
  } catch {
    // already gone
  }
}

/**
 * Python launcher. argv: PARENT_PID KIND ..., where KIND is
 * - `memcached BINARY ARGS...`: exec memcached;
 * - `rings ETC NAME:PORT...`: build one-replica rings and exit;
 * - `{account,container,object,proxy}-server SWIFT_DIR CONF`: run that server in the foreground
 *   (workers = 0: one process, no forks) with swift.conf read from SWIFT_DIR.
 * PR_SET_PDEATHSIG survives execve and Swift's setsid(); a same-uid setuid() does not clear it.
 */
const LAUNCHER = `import ctypes, os, signal, sys
ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
if os.getppid() != int(sys.argv[1]):
    sys.exit('parent already gone')
kind = sys.argv[2]
if kind == 'memcached':
    os.execv(sys.argv[3], sys.argv[3:])
if kind == 'rings':
    # Same as swift-ring-builder NAME.builder create 10 1 1 / add r1z1-127.0.0.1:PORT/d1 1 /
    # rebalance, in one interpreter: 0.5 s instead of 9 x 0.5 s of Python start-up.
    from swift.common.ring import RingBuilder
    for spec in sys.argv[4:]:
        name, port = spec.split(':')
        builder = RingBuilder(10, 1, 1)
        builder.add_dev({'region': 1, 'zone': 1, 'ip': '127.0.0.1', 'port': int(port),
                         'replication_ip': '127.0.0.1', 'replication_port': int(port),
                         'device': 'd1', 'weight': 1.0, 'meta': ''})
        builder.rebalance()
        builder.save(os.path.join(sys.argv[3], name + '.builder'))
        builder.get_ring().save(os.path.join(sys.argv[3], name + '.ring.gz'))
    sys.exit(0)
swift_dir, conf = sys.argv[3], sys.argv[4]
import logging
from swift.common import utils

class NoSyslog(logging.NullHandler):
    # Swift always adds a syslog handler (/dev/log or UDP :514); we log to stderr only.
    def __init__(self, *args, **kwargs):
        logging.NullHandler.__init__(self)

utils.ThreadSafeSysLogHandler = NoSyslog
utils.set_swift_dir(swift_dir)
from swift.common import constraints, storage_policy
constraints.reload_constraints()
storage_policy.reload_storage_policies()
from swift.common.wsgi import run_wsgi
kwargs = {'verbose': True}
if kind == 'object-server':
    from swift.obj import server
    kwargs['global_conf_callback'] = server.global_conf_callback
sys.exit(run_wsgi(conf, kind, **kwargs))
`;

interface Ports {
  proxy: number;
  account: number;
  container: number;
  object: number;
  memcached: number;
}

/** Reserves distinct free ports by holding all listeners open at once, then releases them. */
async function freePorts(count: number): Promise<number[]> {
  const servers: Server[] = [];
  try {
    const ports: number[] = [];
    for (let i = 0; i < count; i++) {
      const server = createServer();
      servers.push(server);
      await new Promise<void>((resolve, reject) => {
        server.once('error', reject);
        server.listen(0, '127.0.0.1', () => resolve());
      });
      const address = server.address();
      if (address === null || typeof address === 'string') throw new Error('no port assigned');
      ports.push(address.port);
    }
    return ports;
  } finally {
    await Promise.all(servers.map((s) => new Promise((resolve) => s.close(resolve))));
  }
}

function swiftConf(): string {
  return `[swift-hash]
swift_hash_path_prefix = s3sftp-dev
swift_hash_path_suffix = s3sftp-dev

[storage-policy:0]
name = Policy-0
default = yes

[swift-constraints]
# AWS allows 1024-byte keys; Swift's default is also 1024 (bytes of the UTF-8 name).
max_object_name_length = 1024
# AWS allows 2 KiB of user metadata in total; Swift's default 256-byte value limit turns a
# longer x-amz-meta-* value into a 500 InternalError through s3api.
max_meta_value_length = 2048
max_meta_overall_size = 4096
`;
}

function commonDefault(etc: string, port: number, user: string, devices: string): string {
  return `[DEFAULT]
bind_ip = 127.0.0.1
bind_port = ${port}
bind_timeout = 2
workers = 0
user = ${user}
swift_dir = ${etc}
devices = ${devices}
mount_check = false
disable_fallocate = true
log_level = INFO
`;
}

function accountConf(etc: string, port: number, user: string, devices: string): string {
  return `${commonDefault(etc, port, user, devices)}
[pipeline:main]
pipeline = healthcheck account-server

[app:account-server]
use = egg:swift#account

[filter:healthcheck]
use = egg:swift#healthcheck
`;
}

function containerConf(etc: string, port: number, user: string, devices: string): string {
  // No container-updater runs: a failed account update would leave ListBuckets stale, so give it time.
  return `${commonDefault(etc, port, user, devices)}node_timeout = 10
conn_timeout = 2

[pipeline:main]
pipeline = healthcheck container-server

[app:container-server]
use = egg:swift#container

[filter:healthcheck]
use = egg:swift#healthcheck
`;
}

function objectConf(etc: string, port: number, user: string, devices: string): string {
  // No object-updater runs: an object whose container update times out would never show in listings.
  return `${commonDefault(etc, port, user, devices)}
[pipeline:main]
pipeline = healthcheck object-server

[app:object-server]
use = egg:swift#object
container_update_timeout = 30
conn_timeout = 2
node_timeout = 30

[filter:healthcheck]
use = egg:swift#healthcheck
`;
}

function proxyConf(etc: string, ports: Ports, user: string, devices: string, probeKey: string, users: TempauthUser[]): string {
  const extraUsers = users.map((u) => {
    if (!/^[A-Za-z0-9]+$/.test(u.account) || !/^[A-Za-z0-9]+$/.test(u.user) || !/^\S+$/.test(u.key)) {
      throw new Error(`tempauth user ${u.account}:${u.user}: use letters and digits for account and user, no spaces in the key`);
    }
    return `user_${u.account}_${u.user} = ${u.key} .admin\n`;
  });
  return `${commonDefault(etc, ports.proxy, user, devices)}
[pipeline:main]
pipeline = catch_errors gatekeeper healthcheck proxy-logging cache listing_formats s3api tempauth copy slo dlo versioned_writes proxy-logging proxy-server

[app:proxy-server]
use = egg:swift#proxy
account_autocreate = true
allow_account_management = true
conn_timeout = 5
node_timeout = 60
# One object server: slow connects on a busy machine must not get it suppressed for a minute.
error_suppression_limit = 1000000
recoverable_node_timeout = 30

[filter:s3api]
use = egg:swift#s3api
location = ${REGION}
s3_acl = false
check_bucket_owner = false
dns_compliant_bucket_names = true
allow_multipart_uploads = true
# AWS limits; Swift defaults to 1000 parts.
max_upload_part_num = 10000
min_segment_size = 5242880
max_bucket_listing = 1000
max_parts_listing = 1000
max_multi_delete_objects = 1000

[filter:tempauth]
use = egg:swift#tempauth
user_test_tester = testing .admin
# Used only by startSwift's readiness check (random per start).
user_ready_probe = ${probeKey} .admin
${extraUsers.join('')}
[filter:slo]
use = egg:swift#slo
# A completed multipart upload is one SLO manifest; allow AWS's 10000 parts.
max_manifest_segments = 10000
max_manifest_size = 67108864

[filter:dlo]
use = egg:swift#dlo

[filter:copy]
use = egg:swift#copy

# Swift inserts it if missing (and logs about it); unused by s3api without object versioning.
[filter:versioned_writes]
use = egg:swift#versioned_writes

[filter:cache]
use = egg:swift#memcache
memcache_servers = 127.0.0.1:${ports.memcached}
# Both set so /etc/swift/memcache.conf is never consulted.
memcache_max_connections = 4

[filter:listing_formats]
use = egg:swift#listing_formats

[filter:proxy-logging]
use = egg:swift#proxy_logging

[filter:healthcheck]
use = egg:swift#healthcheck

[filter:gatekeeper]
use = egg:swift#gatekeeper

[filter:catch_errors]
use = egg:swift#catch_errors
`;
}

/** Keeps the last lines of all children's output for error messages. */
class LogTail {
  #lines: string[] = [];
  #sink: ((line: string) => void) | undefined;

  constructor(sink: ((line: string) => void) | undefined) {
    this.#sink = sink;
  }

  attach(name: string, child: ChildProcess): void {
    for (const stream of [child.stdout, child.stderr]) {
      if (!stream) continue;
      let partial = '';
      stream.setEncoding('utf8');
      stream.on('data', (chunk: string) => {
        const parts = (partial + chunk).split('\n');
        partial = parts.pop() ?? '';
        for (const part of parts) this.#pushFrom(name, part);
      });
      stream.on('end', () => {
        if (partial) this.#pushFrom(name, partial);
        partial = '';
      });
    }
  }

  // Swift's own format already starts with "<server>: ".
  #pushFrom(name: string, line: string): void {
    this.push(line.startsWith(`${name}: `) ? line : `${name}: ${line}`);
  }

  /** Number of lines pushed so far, for {@link since}. */
  count = 0;

  push(line: string): void {
    this.count++;
    this.#lines.push(line);
    if (this.#lines.length > LOG_TAIL_LINES) this.#lines.shift();
    this.#sink?.(line);
  }

  tail(n = 40): string {
    return this.#lines.slice(-n).join('\n');
  }

  /** The lines pushed after `count` was `mark` (as far as they are still kept). */
  since(mark: number): string {
    const n = Math.min(this.count - mark, this.#lines.length);
    return n > 0 ? this.#lines.slice(-n).join('\n') : '';
  }
}

/** Starts memcached and the four Swift servers; resolves once S3 ListBuckets succeeds. */
export async function startSwift(opts: StartSwiftOptions = {}): Promise<SwiftS3> {
  installExitHandler();
  const started = Date.now();
  const deadline = started + (opts.timeoutMs ?? 60_000);
  const ownDir = opts.dir === undefined;
  if (ownDir) await sweepStaleTempDirs();
  const dir = opts.dir ?? (await mkdtemp(path.join(tmpdir(), TEMP_PREFIX)));
  if (ownDir) {
    liveTempDirs.add(dir);
    await writeFile(path.join(dir, OWNER_FILE), String(process.pid));
  }
  const removeDir = async (): Promise<void> => {
    if (!ownDir) return;
    await rm(dir, { recursive: true, force: true });
    liveTempDirs.delete(dir);
  };
  const logs = new LogTail(opts.log);

  try {
    if (opts.port !== undefined && !(await portIsFree(opts.port))) {
      throw new Error(`port ${opts.port} on 127.0.0.1 is already in use`);
    }
    // Ports are picked free and released before the servers bind them, so a parallel run can
    // take one in between; that shows up as a bind failure and a fresh set of ports fixes it.
    for (let attempt = 1; ; attempt++) {
      const instance = new Instance(dir, logs, opts.tempauthUsers ?? []);
      const mark = logs.count;
      try {
        await instance.start(opts.port, deadline);
        logs.push(`swift: ready in ${Date.now() - started} ms at ${instance.endpoint}`);
        let stopped: Promise<void> | undefined;
        return {
          endpoint: instance.endpoint,
          region: REGION,
          accessKeyId: ACCESS_KEY_ID,
          secretAccessKey: SECRET_ACCESS_KEY,
          dir,
          stop: () => (stopped ??= instance.stop().then(removeDir)),
        };
      } catch (err) {
        await instance.stop();
        const clash = /Address already in use|Could not bind/.test(logs.since(mark));
        if (clash && opts.port === undefined && attempt < 3 && Date.now() < deadline) {
          logs.push(`swift: port clash, retrying with new ports (attempt ${attempt + 1})`);
          continue;
        }
        throw err;
      }
    }
  } catch (err) {
    await removeDir();
    const message = err instanceof Error ? err.message : String(err);
    const cause = err instanceof Error && err.cause instanceof Error ? `: ${err.cause.message}` : '';
    throw new Error(`startSwift failed: ${message}${cause}\n--- server log tail ---\n${logs.tail()}`, {
      cause: err,
    });
  }
}

/**
 * Removes temp dirs whose owner died without cleaning up (SIGKILL, or a signal with no handler:
 * 'exit' handlers do not run then; the children themselves die through PR_SET_PDEATHSIG).
 */
async function sweepStaleTempDirs(): Promise<void> {
  const base = tmpdir();
  for (const name of await readdir(base)) {
    if (!name.startsWith(TEMP_PREFIX)) continue;
    const dir = path.join(base, name);
    const pid = Number(await readFile(path.join(dir, OWNER_FILE), 'utf8').catch(() => ''));
    if (!Number.isInteger(pid) || pid <= 0 || isAlive(pid)) continue;
    await rm(dir, { recursive: true, force: true }).catch(() => undefined);
  }
}

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

async function portIsFree(port: number): Promise<boolean> {
  const server = createServer();
  try {
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(port, '127.0.0.1', () => resolve());
    });
    return true;
  } catch {
    return false;
  } finally {
    await new Promise((resolve) => server.close(resolve));
  }
}

/** One set of child processes on one set of ports. */
class Instance {
  endpoint = '';
  #dir: string;
  #logs: LogTail;
  #children: ChildProcess[] = [];
  #stopping = false;
  #earlyExit: Error | undefined;
  /** Aborted when a child dies, so an in-flight readiness request does not delay the error. */
  #died = new AbortController();
  #users: TempauthUser[];

  constructor(dir: string, logs: LogTail, users: TempauthUser[]) {
    this.#dir = dir;
    this.#logs = logs;
    this.#users = users;
  }

  async start(proxyPort: number | undefined, deadline: number): Promise<void> {
    const dir = this.#dir;
    const etc = path.join(dir, 'etc');
    const devices = path.join(dir, 'data');
    const [proxyFree, account, container, object, memcached] = (await freePorts(5)) as [
      number, number, number, number, number,
    ];
    const ports: Ports = { proxy: proxyPort ?? proxyFree, account, container, object, memcached };
    // Only this instance's proxy knows this key: readiness cannot be fooled by another server that
    // happens to answer on the port.
    const probeKey = randomBytes(16).toString('hex');

    // Config and rings are regenerated on every start (ports change); data/ is kept.
    await rm(etc, { recursive: true, force: true });
    await mkdir(etc, { recursive: true });
    await mkdir(path.join(devices, 'd1'), { recursive: true });
    const launcher = path.join(etc, 'launch.py');
    const user = userInfo().username;
    await Promise.all([
      writeFile(launcher, LAUNCHER),
      writeFile(path.join(etc, 'swift.conf'), swiftConf()),
      writeFile(path.join(etc, 'account-server.conf'), accountConf(etc, ports.account, user, devices)),
      writeFile(path.join(etc, 'container-server.conf'), containerConf(etc, ports.container, user, devices)),
      writeFile(path.join(etc, 'object-server.conf'), objectConf(etc, ports.object, user, devices)),
      writeFile(path.join(etc, 'proxy-server.conf'), proxyConf(etc, ports, user, devices, probeKey, this.#users)),
    ]);

    const memcachedArgs = ['-l', '127.0.0.1', '-p', String(ports.memcached), '-U', '0', '-m', '64'];
    if (process.getuid?.() === 0) memcachedArgs.push('-u', 'root');
    this.#launch(launcher, 'memcached', ['memcached', MEMCACHED, ...memcachedArgs]);
    // Storage servers do not read rings (the proxy tells them where to send updates), so they
    // start while the rings are built; the proxy loads the rings at start-up.
    for (const kind of ['account', 'container', 'object']) {
      this.#launch(launcher, `${kind}-server`, [`${kind}-server`, etc, path.join(etc, `${kind}-server.conf`)]);
    }
    const ringSpecs = [`account:${ports.account}`, `container:${ports.container}`, `object:${ports.object}`];
    await execFileAsync(PYTHON, [launcher, String(process.pid), 'rings', etc, ...ringSpecs], {
      cwd: dir,
      timeout: Math.max(1000, deadline - Date.now()),
    }).catch((err: unknown) => {
      const stderr = (err as { stderr?: string }).stderr ?? '';
      throw new Error(`building rings failed: ${stderr.trim() || String(err)}`, { cause: err });
    });
    this.#launch(launcher, 'proxy-server', ['proxy-server', etc, path.join(etc, 'proxy-server.conf')]);

    this.endpoint = `http://127.0.0.1:${ports.proxy}`;
    await this.#waitReady(probeKey, deadline);
  }

  async stop(): Promise<void> {
    if (this.#stopping) return;
    this.#stopping = true;
    const alive = this.#children.filter((c) => c.exitCode === null && c.signalCode === null);
    const exited = alive.map((c) => new Promise<void>((resolve) => c.once('exit', () => resolve())));
    for (const child of alive) if (child.pid !== undefined) killGroup(child.pid, 'SIGTERM');
    const graceful = await Promise.race([
      Promise.all(exited).then(() => true),
      sleep(3000, undefined, { ref: false }).then(() => false),
    ]);
    // SIGKILL the groups regardless: a server may have left a stray child behind.
    for (const child of this.#children) {
      if (child.pid === undefined) continue;
      killGroup(child.pid, 'SIGKILL');
      liveGroups.delete(child.pid);
    }
    if (!graceful) await Promise.race([Promise.all(exited), sleep(2000, undefined, { ref: false })]);
  }

  #launch(launcher: string, name: string, args: string[]): void {
    const child = spawn(PYTHON, [launcher, String(process.pid), ...args], {
      cwd: this.#dir,
      detached: true, // own process group, so stop() can kill the whole group
      stdio: ['ignore', 'pipe', 'pipe'],
      env: { ...process.env, PYTHONUNBUFFERED: '1' },
    });
    this.#children.push(child);
    if (child.pid !== undefined) liveGroups.add(child.pid);
    this.#logs.attach(name, child);
    child.on('error', (err) => {
      this.#earlyExit ??= new Error(`${name} failed to start: ${err.message}`, { cause: err });
      this.#died.abort();
    });
    child.on('exit', (code, signal) => {
      if (child.pid !== undefined) liveGroups.delete(child.pid);
      if (this.#stopping) return;
      this.#logs.push(`${name}: exited (code ${code}, signal ${signal})`);
      this.#earlyExit ??= new Error(`${name} exited (code ${code}, signal ${signal})`);
      this.#died.abort();
    });
  }

  async #waitReady(probeKey: string, deadline: number): Promise<void> {
    const client = new S3Client({
      endpoint: this.endpoint,
      region: REGION,
      forcePathStyle: true,
      credentials: { accessKeyId: PROBE_ACCESS_KEY_ID, secretAccessKey: probeKey },
      maxAttempts: 1,
    });
    try {
      let lastError: unknown;
      for (;;) {
        if (this.#earlyExit) throw this.#earlyExit;
        if (Date.now() > deadline) throw new Error('Swift not ready in time', { cause: lastError });
        try {
          const signal = (ms: number) => AbortSignal.any([AbortSignal.timeout(ms), this.#died.signal]);
          const res = await fetch(`${this.endpoint}/healthcheck`, { signal: signal(2000) });
          await res.text();
          if (res.status !== 200) throw new Error(`healthcheck: HTTP ${res.status}`);
          await client.send(new ListBucketsCommand({}), { abortSignal: signal(5000) });
          if (this.#earlyExit) throw this.#earlyExit;
          return;
        } catch (err) {
          if (this.#earlyExit) throw this.#earlyExit;
          lastError = err;
          await sleep(100);
        }
      }
    } finally {
      client.destroy();
    }
  }
}

interface ServeArgs {
  port: number | undefined;
  dir: string | undefined;
  bucket: string | undefined;
  verbose: boolean;
}

function parseServeArgs(argv: string[]): ServeArgs {
  const args: ServeArgs = { port: undefined, dir: undefined, bucket: undefined, verbose: false };
  for (let i = 0; i < argv.length; i++) {
    const flag = argv[i];
    const value = (): string => {
      const v = argv[++i];
      if (v === undefined) throw new Error(`${flag} needs a value`);
      return v;
    };
    if (flag === '--port') {
      const port = Number(value());
      if (!Number.isInteger(port) || port <= 0 || port > 65535) throw new Error('--port: not a port');
      args.port = port;
    } else if (flag === '--dir') args.dir = path.resolve(value());
    else if (flag === '--bucket') args.bucket = value();
    else if (flag === '--verbose' || flag === '-v') args.verbose = true;
    else throw new Error(`unknown argument ${flag}`);
  }
  return args;
}

async function serve(argv: string[]): Promise<void> {
  const args = parseServeArgs(argv);
  if (args.dir !== undefined) await mkdir(args.dir, { recursive: true });
  const swift = await startSwift({
    dir: args.dir,
    port: args.port,
    // Quiet by default, but a server dying after start-up is always reported.
    log: (line) => {
      if (args.verbose || /^[\w-]+: exited \(/.test(line)) process.stderr.write(`${line}\n`);
    },
  });
  let stopped = false;
  const shutdown = (): void => {
    if (stopped) return;
    stopped = true;
    swift.stop().then(
      () => process.exit(0),
      (err: unknown) => {
        process.stderr.write(`stop failed: ${String(err)}\n`);
        process.exit(1);
      },
    );
  };
  process.on('SIGINT', shutdown);
  process.on('SIGTERM', shutdown);

  if (args.bucket !== undefined) {
    const client = new S3Client({
      endpoint: swift.endpoint,
      region: swift.region,
      forcePathStyle: true,
      credentials: { accessKeyId: swift.accessKeyId, secretAccessKey: swift.secretAccessKey },
    });
    try {
      await client.send(new CreateBucketCommand({ Bucket: args.bucket }));
    } catch (err) {
      // A kept --dir already has the bucket.
      const name = (err as { name?: string }).name;
      if (name !== 'BucketAlreadyOwnedByYou' && name !== 'BucketAlreadyExists') {
        await swift.stop();
        throw err;
      }
    } finally {
      client.destroy();
    }
  }
  process.stdout.write(
    `${JSON.stringify({
      endpoint: swift.endpoint,
      region: swift.region,
      accessKeyId: swift.accessKeyId,
      secretAccessKey: swift.secretAccessKey,
      bucket: args.bucket ?? null,
      dir: swift.dir,
    })}\n`,
  );
}

if (import.meta.main) {
  const [command, ...rest] = process.argv.slice(2);
  if (command !== 'serve') {
    process.stderr.write('usage: node dev/swift.ts serve [--port N] [--dir DIR] [--bucket NAME] [--verbose]\n');
    process.exit(2);
  }
  serve(rest).catch((err: unknown) => {
    process.stderr.write(`${err instanceof Error ? err.message : String(err)}\n`);
    process.exit(1);
  });
}
