/**
 * One legacy SCP session: an SSH `exec` request running `scp -t` or `scp -f`.
 *
 * The command line is parsed (anything but scp is refused: there is no
 * shell), the sink or source side runs over the channel, and the channel ends
 * with an exit status (0 only when every entry was copied), which OpenSSH's
 * scp needs. Like SftpSession, this talks to nothing but `Storage`, checks
 * the user's permissions the same way and reports through SessionEvents.
 */
import type { ServerChannel } from 'ssh2';
import type { Logger } from 'pino';
import type { SetstatMode } from '../config/types.ts';
import { requirePermission, resolvePath, statOrUndefined } from '../session/core.ts';
import type { SessionDeps, SessionEvents } from '../session/types.ts';
import type { FileInfo, FileWriter, Storage } from '../storage/storage.ts';
import type { Permission, User } from '../users/user.ts';
import { ScpChannel } from './channel-io.ts';
import { parseScpCommand, ScpCommandError, type ScpCommand } from './command.ts';
import type { ScpContext } from './context.ts';
import { ChannelClosedError, ClientAbortedError, toScpError } from './errors.ts';
import { runSink } from './sink.ts';
import { runSource } from './source.ts';

/** How much client input the source side reads ahead (it only expects one-byte answers). */
const SOURCE_READ_AHEAD = 64 * 1024;

/** What an ScpSession is built from; the same pieces as an SftpSession. */
export interface ScpSessionOptions extends SessionDeps {
  channel: ServerChannel;
  /** The exec request's command line. */
  command: string;
}

/**
 * One exec request: an scp command run to its exit status, or a refused command.
 * The fields below repeat ScpContext on purpose: the class is the context that sink.ts and
 * source.ts receive (a deliberate duplicate for the `duplicates` report).
 */
export class ScpSession implements ScpContext {
  readonly storage: Storage;
  readonly user: User;
  readonly setstatMode: SetstatMode;
  readonly log: Logger;
  readonly events: SessionEvents;
  readonly clock: () => Date;
  readonly #channel: ServerChannel;
  readonly #commandLine: string;
  #io: ScpChannel | undefined;
  #command: ScpCommand | undefined;
  #errors = 0;
  #writer: FileWriter | undefined;
  #running = false;
  #run: Promise<number> | undefined;
  #closing: Promise<void> | undefined;

  constructor(opts: ScpSessionOptions) {
    this.#channel = opts.channel;
    this.#commandLine = opts.command;
    this.storage = opts.storage;
    this.user = opts.user;
    this.setstatMode = opts.setstatMode;
    this.log = opts.log.child({ protocol: 'scp' });
    this.events = opts.events ?? {};
    this.clock = opts.clock ?? (() => new Date());
  }

  get io(): ScpChannel {
    if (!this.#io) throw new Error('scp session not started');
    return this.#io;
  }

  get command(): ScpCommand {
    if (!this.#command) throw new Error('scp session not started');
    return this.#command;
  }

  /** True while the command runs. */
  get busy(): boolean {
    return this.#running;
  }

  /**
   * Runs the command to its end: the exit status is sent and the channel
   * closed. Resolves with the exit status; never rejects.
   */
  run(): Promise<number> {
    this.#run ??= this.#execute();
    return this.#run;
  }

  /**
   * Ends the session (the connection is gone, or a drain ran out of time):
   * the upload in progress is aborted, so nothing partial is stored.
   */
  close(): Promise<void> {
    this.#closing ??= this.#shutdown();
    return this.#closing;
  }

  async #shutdown(): Promise<void> {
    this.#io?.markClosed();
    await this.#writer?.abort().catch((err: unknown) => this.log.warn({ err }, 'aborting an scp upload failed'));
    await this.#run?.catch(() => undefined);
  }

  async #execute(): Promise<number> {
    this.#running = true;
    try {
      try {
        this.#command = parseScpCommand(this.#commandLine);
      } catch (err) {
        if (!(err instanceof ScpCommandError)) throw err;
        this.log.info({ command: this.#commandLine.slice(0, 200), reason: err.message }, 'exec request refused');
        const io = new ScpChannel(this.#channel);
        this.#io = io;
        io.stderr(err.message);
        await io.finish(1);
        return 1;
      }
      const command = this.#command;
      this.#io = new ScpChannel(this.#channel, { readAhead: command.mode === 'source' ? SOURCE_READ_AHEAD : 0 });
      if (this.#closing) this.#io.markClosed();
      this.log.debug({ mode: command.mode, recursive: command.recursive, paths: command.paths }, 'scp started');
      try {
        await (command.mode === 'sink' ? runSink(this) : runSource(this));
      } catch (err) {
        await this.#fail(err);
      }
      const status = this.#errors > 0 ? 1 : 0;
      await this.#io.finish(status);
      this.log.debug({ status }, 'scp finished');
      return status;
    } catch (err) {
      this.log.error({ err }, 'scp session failed');
      try {
        this.#channel.destroy();
      } catch {
        // Already gone: nothing left to close.
      }
      return 1;
    } finally {
      await this.#writer?.abort().catch(() => undefined);
      this.#running = false;
    }
  }

  /** An error that ends the session: told to the client as a fatal line when it can still hear it. */
  async #fail(err: unknown): Promise<void> {
    this.#errors++;
    if (err instanceof ChannelClosedError) {
      this.log.info('scp session ended: the connection closed mid-transfer');
      return;
    }
    if (err instanceof ClientAbortedError) {
      this.log.info({ message: err.message }, 'scp session ended: the client gave up');
      return;
    }
    // Storage errors that end a session (the sink's target) already name their path.
    const line = toScpError(err);
    if (line.internal) this.log.error({ err }, 'scp session failed');
    else this.log.info({ reason: line.message }, 'scp session refused');
    await this.io.fatal(line.message).catch(() => undefined);
  }

  // ---- ScpContext ------------------------------------------------------------

  require(permission: Permission, path: string): void {
    requirePermission(this.user, permission, path);
  }

  path(raw: string): string {
    return resolvePath(raw);
  }

  statOrUndefined(path: string): Promise<FileInfo | undefined> {
    return statOrUndefined(this.storage, path);
  }

  async warn(err: unknown, path?: string): Promise<void> {
    this.#errors++;
    const line = toScpError(err, path);
    if (line.internal) this.log.error({ err, path }, 'scp operation failed');
    else this.log.debug({ reason: line.message }, 'scp operation refused');
    await this.io.warning(line.message);
  }

  countError(): void {
    this.#errors++;
  }

  setOpenWriter(writer: FileWriter | undefined): void {
    this.#writer = writer;
  }
}
