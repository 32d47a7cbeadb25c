/**
 * Password hashes: argon2id (the default; hashed on libuv's thread pool) and
 * bcrypt (for hashes made by htpasswd, PHP, Python, ...; bcryptjs runs on the
 * main thread in slices, so it costs more under a burst of logins).
 */

import * as argon2 from 'argon2';
import bcrypt from 'bcryptjs';

/** A hash algorithm this server can verify. */
export type PasswordAlgorithm = 'argon2id' | 'bcrypt';

/** bcrypt work factor for new hashes: about 0.3s here, OWASP asks for at least 10. */
const BCRYPT_COST = 12;

// Shapes only; the libraries check the details when verifying.
const BCRYPT_RE = /^\$2[aby]\$\d{2}\$[./A-Za-z0-9]{53}$/;
// node-argon2 writes the parameters as m,p,t while other tools write m,t,p.
const ARGON2ID_RE = /^\$argon2id\$(?:v=\d+\$)?[a-z]=\d+(?:,[a-z]=\d+)*\$[A-Za-z0-9+/]+\$[A-Za-z0-9+/]+$/;

/** hashPassword was asked for something it will not do. */
export class PasswordHashError extends Error {
  override name = 'PasswordHashError';
}

/** Which algorithm made this hash, or undefined if it is not one we can verify. */
export function passwordHashAlgorithm(hash: string): PasswordAlgorithm | undefined {
  if (BCRYPT_RE.test(hash)) return 'bcrypt';
  if (ARGON2ID_RE.test(hash)) return 'argon2id';
  return undefined;
}

/** Hashes a password for an SftpUser's spec.passwordHash. */
export async function hashPassword(plain: string, algo: PasswordAlgorithm = 'argon2id'): Promise<string> {
  if (plain === '') throw new PasswordHashError('refusing to hash an empty password');
  if (algo === 'bcrypt') {
    // bcrypt silently ignores everything after 72 bytes; a longer password
    // would accept any input sharing its first 72 bytes.
    if (bcrypt.truncates(plain)) {
      throw new PasswordHashError('bcrypt uses only the first 72 bytes of a password; use argon2id for longer ones');
    }
    return bcrypt.hash(plain, BCRYPT_COST);
  }
  return argon2.hash(plain, { type: argon2.argon2id });
}

/**
 * True if `plain` matches `hash`. Unknown or malformed hashes give false,
 * never an exception. The libraries compare digests in constant time.
 */
export async function verifyPassword(plain: string, hash: string): Promise<boolean> {
  try {
    switch (passwordHashAlgorithm(hash)) {
      case 'bcrypt':
        return await bcrypt.compare(plain, hash);
      case 'argon2id':
        return await argon2.verify(hash, plain);
      default:
        return false;
    }
  } catch {
    return false;
  }
}
