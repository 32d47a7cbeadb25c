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
import { spawn, execFile } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import { existsSync, rmSync } from 'node:fs';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { createServer } from 'node:net';
import type { Server } from 'node:net';
import { tmpdir, userInfo } from 'node:os';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { promisify } from 'node:util';
import {
  CreateBucketCommand,
  ListBucketsCommand,
  S3Client,
} from '@aws-sdk/client-s3';

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
}

const PYTHON = '/usr/bin/python3';
const MEMCACHED = '/usr/bin/memcached';
const ACCESS_KEY_ID = 'test:tester';
const SECRET_ACCESS_KEY = 'testing';
const REGION = 'us-east-1';
const LOG_TAIL_LINES = 200;

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
 * Python launcher. argv: PARENT_PID KIND SWIFT_DIR CONF (KIND = memcached → exec the rest of argv).
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

function proxyConf(etc: string, ports: Ports, user: string, devices: string): string {
  return `${commonDefault(etc, ports.proxy, user, devices)}
[pipeline:main]
pipeline = catch_errors gatekeeper healthcheck proxy-logging cache listing_formats s3api tempauth copy slo dlo versioned_writes proxy-logging proxy-server

[app:proxy-server]
use = egg:swift#proxy
account_autocreate = true
allow_account_management = true
conn_timeout = 2
node_timeout = 30
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

  push(line: string): void {
    this.#lines.push(line);
    if (this.#lines.length > LOG_TAIL_LINES) this.#lines.shift();
    this.#sink?.(line);
  }

  tail(n = 40): string {
    return this.#lines.slice(-n).join('\n');
  }
}

/** Starts memcached and the four Swift servers; resolves once S3 ListBuckets succeeds. */
export async function startSwift(opts: StartSwiftOptions = {}): Promise<SwiftS3> {
  installExitHandler();
  const started = Date.now();
  const timeoutMs = opts.timeoutMs ?? 60_000;
  const ownDir = opts.dir === undefined;
  const dir = opts.dir ?? (await mkdtemp(path.join(tmpdir(), 's3sftp-swift-')));
  if (ownDir) liveTempDirs.add(dir);
  const etc = path.join(dir, 'etc');
  const devices = path.join(dir, 'data');
  const logs = new LogTail(opts.log);
  const children: ChildProcess[] = [];
  let stopping = false;

  const stopChildren = async (): Promise<void> => {
    stopping = true;
    const alive = children.filter((c) => c.exitCode === null && c.signalCode === null);
    const exited = alive.map((c) => new Promise<void>((resolve) => c.once('exit', () => resolve())));
    for (const child of alive) if (child.pid !== undefined) killGroup(child.pid, 'SIGTERM');
    const graceful = await Promise.race([
      Promise.all(exited).then(() => true),
      sleep(3000).then(() => false),
    ]);
    // SIGKILL the groups regardless: a server may have left a stray child behind.
    for (const child of children) {
      if (child.pid === undefined) continue;
      killGroup(child.pid, 'SIGKILL');
      liveGroups.delete(child.pid);
    }
    if (!graceful) await Promise.race([Promise.all(exited), sleep(2000)]);
  };

  const stop = async (): Promise<void> => {
    if (stopping) return;
    await stopChildren();
    if (ownDir) {
      await rm(dir, { recursive: true, force: true });
      liveTempDirs.delete(dir);
    }
  };

  try {
    const [proxyFree, account, container, object, memcached] = (await freePorts(5)) as [number, number, number, number, number];
    const ports: Ports = { proxy: opts.port ?? proxyFree, account, container, object, memcached };
    const user = userInfo().username;

    // Regenerate config and rings on every start (ports change); data/ is kept when opts.dir is given.
    await rm(etc, { recursive: true, force: true });
    await mkdir(etc, { recursive: true });
    await mkdir(path.join(devices, 'd1'), { recursive: true });
    const launcher = path.join(etc, 'launch.py');
    await Promise.all([
      writeFile(launcher, LAUNCHER),
      writeFile(path.join(etc, 'swift.conf'), swiftConf()),
      writeFile(path.join(etc, 'account-server.conf'), accountConf(etc, ports.account, user, devices)),
      writeFile(path.join(etc, 'container-server.conf'), containerConf(etc, ports.container, user, devices)),
      writeFile(path.join(etc, 'object-server.conf'), objectConf(etc, ports.object, user, devices)),
      writeFile(path.join(etc, 'proxy-server.conf'), proxyConf(etc, ports, user, devices)),
    ]);

    let earlyExit: Error | undefined;
    const launch = (name: string, args: string[]): void => {
      const child = spawn(PYTHON, [launcher, String(process.pid), ...args], {
        cwd: dir,
        detached: true, // own process group, so stop() can kill the whole group
        stdio: ['ignore', 'pipe', 'pipe'],
        env: { ...process.env, PYTHONUNBUFFERED: '1' },
      });
      children.push(child);
      if (child.pid !== undefined) liveGroups.add(child.pid);
      logs.attach(name, child);
      child.on('error', (err) => {
        earlyExit ??= new Error(`${name} failed to start: ${err.message}`, { cause: err });
      });
      child.on('exit', (code, signal) => {
        if (child.pid !== undefined) liveGroups.delete(child.pid);
        if (!stopping) {
          logs.push(`${name}: exited (code ${code}, signal ${signal})`);
          earlyExit ??= new Error(`${name} exited during start-up (code ${code}, signal ${signal})`);
        }
      });
    };

    const memcachedArgs = ['-l', '127.0.0.1', '-p', String(ports.memcached), '-U', '0', '-m', '64'];
    if (process.getuid?.() === 0) memcachedArgs.push('-u', 'root');
    launch('memcached', ['memcached', MEMCACHED, ...memcachedArgs]);
    // Storage servers do not read rings (the proxy tells them where to send updates), so they
    // start while the rings are built; the proxy loads the rings at start-up.
    for (const kind of ['account', 'container', 'object']) {
      launch(`${kind}-server`, [`${kind}-server`, etc, path.join(etc, `${kind}-server.conf`)]);
    }
    await execFileAsync(
      PYTHON,
      [launcher, String(process.pid), 'rings', etc,
        `account:${ports.account}`, `container:${ports.container}`, `object:${ports.object}`],
      { cwd: dir, timeout: 30_000 },
    ).catch((err: unknown) => {
      const stderr = (err as { stderr?: string }).stderr ?? '';
      throw new Error(`building rings failed: ${stderr.trim() || String(err)}`, { cause: err });
    });
    launch('proxy-server', ['proxy-server', etc, path.join(etc, 'proxy-server.conf')]);

    const endpoint = `http://127.0.0.1:${ports.proxy}`;
    const client = new S3Client({
      endpoint,
      region: REGION,
      forcePathStyle: true,
      credentials: { accessKeyId: ACCESS_KEY_ID, secretAccessKey: SECRET_ACCESS_KEY },
      maxAttempts: 1,
    });
    try {
      let lastError: unknown;
      for (;;) {
        if (earlyExit) throw earlyExit;
        if (Date.now() - started > timeoutMs) {
          throw new Error(`Swift not ready after ${timeoutMs} ms`, { cause: lastError });
        }
        try {
          const res = await fetch(`${endpoint}/healthcheck`, { signal: AbortSignal.timeout(2000) });
          await res.text();
          if (res.status !== 200) throw new Error(`healthcheck: HTTP ${res.status}`);
          await client.send(new ListBucketsCommand({}), { abortSignal: AbortSignal.timeout(5000) });
          break;
        } catch (err) {
          lastError = err;
          await sleep(100);
        }
      }
    } finally {
      client.destroy();
    }
    if (earlyExit) throw earlyExit;
    logs.push(`swift: ready in ${Date.now() - started} ms at ${endpoint}`);

    return {
      endpoint,
      region: REGION,
      accessKeyId: ACCESS_KEY_ID,
      secretAccessKey: SECRET_ACCESS_KEY,
      dir,
      stop,
    };
  } catch (err) {
    await stop();
    const message = err instanceof Error ? err.message : String(err);
    const cause = err instanceof Error && err.cause instanceof Error ? `: ${err.cause.message}` : '';
    throw new Error(`startSwift failed: ${message}${cause}\n--- server log tail ---\n${logs.tail()}`, {
      cause: err,
    });
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
  if (args.dir !== undefined && !existsSync(args.dir)) await mkdir(args.dir, { recursive: true });
  const swift = await startSwift({
    dir: args.dir,
    port: args.port,
    log: args.verbose ? (line) => process.stderr.write(`${line}\n`) : undefined,
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
