/**
 * The checksum commands over SSH exec: `md5sum`, `sha1sum` and `sha256sum`
 * with one or more paths, answered like GNU coreutils
 * (`<hex>  <path>\n`; `\` in front of a line whose name holds a backslash or
 * a newline, which are escaped), so that rclone's sftp backend, which runs
 * `md5sum PATH` and parses the first word, can verify files without reading
 * them (`rclone check`, `sync --checksum`). With no path (or `-`) the
 * command hashes its standard input: rclone probes for the command that way,
 * expecting the digest of empty input.
 *
 * Hashes come from Storage.checksum(): stored at upload for files this server
 * wrote, computed once otherwise. The paths are the user's, inside their root,
 * and need the download permission.
 */
import { createHash } from 'node:crypto';
import type { ServerChannel } from 'ssh2';
import type { Logger } from 'pino';
import type { SessionDeps } from '../session/types.ts';
import { NotFoundError, PermissionDeniedError, StorageError, WrongTypeError } from '../storage/errors.ts';
import { requirePermission, resolvePath } from '../session/core.ts';
import type { HashAlgorithm, Storage } from '../storage/storage.ts';
import type { User } from '../users/user.ts';
import { resolveHome, splitWords } from '../scp/command.ts';

/** Command name → algorithm. */
const COMMANDS: Readonly<Record<string, HashAlgorithm>> = { md5sum: 'md5', sha1sum: 'sha1', sha256sum: 'sha256' };
/** Longest command line accepted; a few paths at most. */
const MAX_COMMAND_BYTES = 64 * 1024;
/** Paths hashed in one command; more is a script, not a sync tool. */
const MAX_PATHS = 1000;

/** A parsed checksum command. `paths` are as the client wrote them ("-" for standard input). */
export interface ChecksumCommand {
  name: string;
  algorithm: HashAlgorithm;
  paths: string[];
}

/** Why a checksum command line is refused: the message for stderr. */
export class ChecksumCommandError extends Error {
  override name = 'ChecksumCommandError';
}

/** The command's name when the line runs one of the checksum commands (`/usr/bin/md5sum` too), else undefined. */
export function checksumCommandName(line: string): string | undefined {
  const name = /^\s*(?:\S*\/)?(\w+)(?:\s|$)/.exec(line)?.[1];
  return name !== undefined && Object.hasOwn(COMMANDS, name) ? name : undefined;
}

/** Parses a checksum command line; throws ChecksumCommandError for what it cannot run. */
export function parseChecksumCommand(line: string): ChecksumCommand {
  const name = checksumCommandName(line);
  if (!name) throw new ChecksumCommandError('not a checksum command');
  if (Buffer.byteLength(line) > MAX_COMMAND_BYTES) throw new ChecksumCommandError(`${name}: command line too long`);
  if (line.includes('\0')) throw new ChecksumCommandError(`${name}: command line contains a NUL byte`);
  let words: string[];
  try {
    words = splitWords(line).map(resolveHome);
  } catch (err) {
    // Quoting errors and shell syntax: the message says what is not supported.
    throw new ChecksumCommandError(`${name}: ${(err as Error).message}`);
  }
  const paths: string[] = [];
  let options = true;
  for (const word of words.slice(1)) {
    if (options && word === '--') {
      options = false;
    } else if (options && word.startsWith('-') && word !== '-') {
      throw new ChecksumCommandError(`${name}: option ${word} is not supported by this server (only paths are)`);
    } else {
      paths.push(word);
    }
  }
  if (paths.length > MAX_PATHS) throw new ChecksumCommandError(`${name}: too many paths (at most ${MAX_PATHS})`);
  return { name, algorithm: COMMANDS[name]!, paths: paths.length === 0 ? ['-'] : paths };
}

/** One line of coreutils output for `name`, escaped the way coreutils escapes it. */
export function checksumLine(hex: string, name: string): string {
  if (!name.includes('\\') && !name.includes('\n')) return `${hex}  ${name}\n`;
  return `\\${hex}  ${name.replaceAll('\\', '\\\\').replaceAll('\n', '\\n')}\n`;
}

export interface ChecksumSessionOptions extends SessionDeps {
  channel: ServerChannel;
  command: string;
}

/** One exec request running a checksum command to its exit status. */
export class ChecksumSession {
  readonly #channel: ServerChannel;
  readonly #line: string;
  readonly #storage: Storage;
  readonly #user: User;
  readonly #log: Logger;
  #running = false;
  #closed = false;
  #run: Promise<number> | undefined;

  constructor(opts: ChecksumSessionOptions) {
    this.#channel = opts.channel;
    this.#line = opts.command;
    this.#storage = opts.storage;
    this.#user = opts.user;
    this.#log = opts.log.child({ protocol: 'exec' });
    // Ignored if it fails: the session ends when the channel does.
    this.#channel.on('error', (err: Error) => this.#log.debug({ err: err.message }, 'exec channel error'));
    this.#channel.on('close', () => void (this.#closed = true));
  }

  /** True while the command runs. */
  get busy(): boolean {
    return this.#running;
  }

  /** Runs the command; resolves with its exit status, never rejects. */
  run(): Promise<number> {
    this.#run ??= this.#execute();
    return this.#run;
  }

  /** Ends the session early (connection gone, drain over): nothing to undo, hashing only reads. */
  async close(): Promise<void> {
    this.#closed = true;
    await this.#run?.catch(() => undefined);
  }

  async #execute(): Promise<number> {
    this.#running = true;
    let status = 1;
    try {
      status = await this.#answer();
    } catch (err) {
      this.#log.error({ err }, 'checksum command failed');
    } finally {
      this.#finish(status);
      this.#running = false;
    }
    return status;
  }

  /** Writes one line per path; 1 if any path failed, as coreutils does. */
  async #answer(): Promise<number> {
    let command: ChecksumCommand;
    try {
      command = parseChecksumCommand(this.#line);
    } catch (err) {
      if (!(err instanceof ChecksumCommandError)) throw err;
      this.#log.info({ command: this.#line.slice(0, 200), reason: err.message }, 'exec request refused');
      this.#stderr(`${err.message}\n`);
      return 1;
    }
    this.#log.debug({ command: command.name, paths: command.paths.length }, 'checksum command');
    let status = 0;
    let stdinUsed = false;
    for (const raw of command.paths) {
      if (this.#closed) return 1;
      if (raw === '-') {
        // Standard input can be read once; a second "-" hashes what is left: nothing.
        const hex = await this.#hashStdin(command.algorithm, stdinUsed);
        stdinUsed = true;
        this.#stdout(checksumLine(hex, '-'));
        continue;
      }
      try {
        const path = resolvePath(raw);
        requirePermission(this.#user, 'download', path);
        const hex = await this.#storage.checksum(path, command.algorithm);
        this.#stdout(checksumLine(hex, raw));
      } catch (err) {
        status = 1;
        this.#stderr(`${command.name}: ${raw}: ${this.#describe(err)}\n`);
      }
    }
    return status;
  }

  /** coreutils' wording for a failure; anything unexpected is logged, not shown. */
  #describe(err: unknown): string {
    if (err instanceof NotFoundError) return 'No such file or directory';
    if (err instanceof WrongTypeError) return 'Is a directory';
    if (err instanceof PermissionDeniedError) return 'Permission denied';
    if (err instanceof StorageError && err.name === 'InvalidRequestError') return err.message;
    this.#log.error({ err }, 'checksum failed');
    return 'Input/output error';
  }

  /** Hashes the channel's input up to EOF (the client's stdin). */
  #hashStdin(algorithm: HashAlgorithm, alreadyRead: boolean): Promise<string> {
    const hash = createHash(algorithm);
    if (alreadyRead) return Promise.resolve(hash.digest('hex'));
    return new Promise((resolve) => {
      let finished = false;
      const done = () => {
        if (finished) return;
        finished = true;
        this.#channel.off('data', onData);
        resolve(hash.digest('hex'));
      };
      const onData = (data: Buffer) => hash.update(data);
      this.#channel.on('data', onData);
      this.#channel.once('end', done);
      this.#channel.once('close', done);
    });
  }

  #stdout(text: string): void {
    if (!this.#closed) this.#channel.write(text);
  }

  #stderr(text: string): void {
    if (!this.#closed) this.#channel.stderr.write(text);
  }

  #finish(status: number): void {
    if (this.#closed) return;
    try {
      this.#channel.exit(status);
      this.#channel.end();
    } catch {
      // The client went away meanwhile: nothing to tell it.
    }
  }
}
