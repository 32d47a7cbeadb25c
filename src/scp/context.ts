/**
 * What the sink and source sides of an SCP session share: the channel, the
 * user's storage and the session-wide helpers (src/session/core.ts) bound to
 * this session. ScpSession implements it; sink.ts and source.ts only see this
 * interface.
 */
import type { Logger } from 'pino';
import type { SetstatMode } from '../config/types.ts';
import type { SessionEvents } from '../session/types.ts';
import type { FileInfo, FileWriter, Storage } from '../storage/storage.ts';
import type { Permission, User } from '../users/user.ts';
import type { ScpChannel } from './channel-io.ts';
import type { ScpCommand } from './command.ts';

/** The session as the sink and source sides use it. */
export interface ScpContext {
  readonly io: ScpChannel;
  readonly command: ScpCommand;
  readonly storage: Storage;
  readonly user: User;
  readonly setstatMode: SetstatMode;
  readonly log: Logger;
  readonly events: SessionEvents;
  readonly clock: () => Date;
  /** Throws PermissionDeniedError unless the user holds `permission` at `path` (a virtual folder has its own). */
  require(permission: Permission, path: string): void;
  /** A client path made absolute and normalised (the user's chroot is "/"). */
  path(raw: string): string;
  /** Stat that answers undefined instead of NotFoundError. */
  statOrUndefined(path: string): Promise<FileInfo | undefined>;
  /**
   * Reports a failure the session goes on from: counted for the exit status,
   * logged, and sent to the client as a "\1" warning line.
   */
  warn(err: unknown, path?: string): Promise<void>;
  /** Counts a failure that the client itself reported or already knows about. */
  countError(): void;
  /** The upload in progress, so ending the session can abort it; undefined once it is finished. */
  setOpenWriter(writer: FileWriter | undefined): void;
}
