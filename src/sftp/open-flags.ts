/**
 * SSH_FXF_* open flags. ssh2's flagsToString() returns null for some valid
 * combinations (WRITE|CREAT, WRITE|CREAT|EXCL), so we decode the bits ourselves.
 */
export const OPEN_FLAG = {
  READ: 0x01,
  WRITE: 0x02,
  APPEND: 0x04,
  CREAT: 0x08,
  TRUNC: 0x10,
  EXCL: 0x20,
} as const;

export interface OpenFlags {
  read: boolean;
  write: boolean;
  append: boolean;
  create: boolean;
  truncate: boolean;
  exclusive: boolean;
}

export function decodeOpenFlags(pflags: number): OpenFlags {
  return {
    read: (pflags & OPEN_FLAG.READ) !== 0,
    write: (pflags & OPEN_FLAG.WRITE) !== 0,
    append: (pflags & OPEN_FLAG.APPEND) !== 0,
    create: (pflags & OPEN_FLAG.CREAT) !== 0,
    truncate: (pflags & OPEN_FLAG.TRUNC) !== 0,
    exclusive: (pflags & OPEN_FLAG.EXCL) !== 0,
  };
}
