#!/usr/bin/env node
/** The s3sftp command: `serve` runs the server, `hash-password` makes a passwordHash. */
import { readFileSync } from 'node:fs';
import { loadConfig, ConfigError } from '../config/load.ts';
import { startServer, StartupError } from '../server.ts';
import { hashPasswordCommand } from './hash-password.ts';
import { createLogger } from './logger.ts';
import { setHeapGrowth } from './heap-growth.ts';

const USAGE = `usage:
  s3sftp serve [--config FILE]     run the SFTP server (every setting can also come from S3SFTP_* variables)
  s3sftp hash-password [--bcrypt]  read a password on stdin, print a hash for spec.passwordHash
  s3sftp --version`;

async function main(argv: string[]): Promise<number> {
  const [command, ...args] = argv;
  switch (command) {
    case 'serve':
      setHeapGrowth();
      return serve(args);
    case 'hash-password':
      return hashPasswordCommand(process.stdin, process.stdout, args);
    case '--version':
    case 'version':
      process.stdout.write(`${version()}\n`);
      return 0;
    case '--help':
    case '-h':
    case 'help':
      process.stdout.write(`${USAGE}\n`);
      return 0;
    default:
      process.stderr.write(`${command ? `unknown command "${command}"\n` : ''}${USAGE}\n`);
      return 2;
  }
}

async function serve(args: string[]): Promise<number> {
  let file: string | undefined;
  for (let i = 0; i < args.length; i++) {
    const arg = args[i];
    if (arg === '--config' || arg === '-c') file = args[++i];
    else if (arg?.startsWith('--config=')) file = arg.slice('--config='.length);
    else {
      process.stderr.write(`serve: unknown argument "${arg}"\n${USAGE}\n`);
      return 2;
    }
  }
  let config;
  try {
    config = loadConfig({ file, env: process.env });
  } catch (err) {
    if (err instanceof ConfigError) {
      process.stderr.write(`s3sftp: invalid configuration\n${err.message}\n`);
      return 2;
    }
    throw err;
  }
  const log = createLogger(config.log.level);
  let server;
  try {
    server = await startServer(config, log);
  } catch (err) {
    // One line with the cause and the fix, no stack trace: the operator's next step is a setting
    // or the environment, not this program's source.
    if (err instanceof StartupError) {
      process.stderr.write(`s3sftp: ${oneLine(err.message)}\n`);
      return err.exitCode;
    }
    process.stderr.write(`s3sftp: start-up failed: ${oneLine(err instanceof Error ? err.message : String(err))}\n`);
    return 1;
  }
  const running = server;
  await new Promise<void>((resolve) => {
    let signals = 0;
    // SIGTERM (Kubernetes): drain, letting uploads in flight finish within the
    // grace period. SIGINT (Ctrl-C), or a second signal: abort them now.
    const stop = (signal: NodeJS.Signals) => {
      signals++;
      const graceMs = signal === 'SIGTERM' && signals === 1 ? config.shutdownGracePeriodMs : 0;
      log.info({ signal, graceMs }, 'shutting down');
      running.drain(graceMs).then(resolve, resolve);
    };
    process.on('SIGTERM', stop);
    process.on('SIGINT', stop);
  });
  await server.close();
  log.info('stopped');
  return 0;
}

function oneLine(text: string): string {
  return text.replace(/\s*\n\s*/g, '; ');
}

function version(): string {
  const pkg = JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { version: string };
  return pkg.version;
}

main(process.argv.slice(2)).then(
  (code) => {
    process.exitCode = code;
    // Every handle is closed by now; a peer that never acknowledges the end of
    // its connection must not keep the process from exiting.
    setTimeout(() => process.exit(), 5_000).unref();
  },
  (err: unknown) => {
    process.stderr.write(`s3sftp: ${(err as Error)?.stack ?? String(err)}\n`);
    process.exitCode = 1;
  },
);
