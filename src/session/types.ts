/**
 * What every file-transfer session (SFTP, SCP) is built from and what it
 * reports. Both front ends take SessionDeps; the SSH server builds them once
 * per channel (ssh/server.ts).
 */
import type { Logger } from 'pino';
import type { SetstatMode } from '../config/types.ts';
import type { Storage } from '../storage/storage.ts';
import type { User } from '../users/user.ts';

/** The changes to the tree that are reported (audit log, metrics). */
export type TreeOperation = 'mkdir' | 'rmdir' | 'remove' | 'rename' | 'setstat';

/**
 * What a session reports about its transfers (audit log, metrics). A transfer
 * is reported once: an upload when it is closed (stored or not) or when the
 * session ends with it open; a download when closed or at session end, with
 * the bytes sent.
 */
export interface SessionEvents {
  transferDone?(t: { user: string; direction: 'upload' | 'download'; path: string; bytes: number; seconds: number; ok: boolean }): void;
  operation?(o: { user: string; op: TreeOperation; path: string; target?: string; ok: boolean }): void;
}

/** What every file-transfer session (SFTP, SCP) is built from. */
export interface SessionDeps {
  storage: Storage;
  user: User;
  setstatMode: SetstatMode;
  log: Logger;
  events?: SessionEvents;
  clock?: () => Date;
}
