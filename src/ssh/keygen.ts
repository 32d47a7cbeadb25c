/** ed25519 key pairs in OpenSSH format, as ssh2 writes them. */
import ssh2 from 'ssh2';

const { utils } = ssh2;
const ATTEMPTS = 20;

/** "ssh-ed25519" and the 32-byte key, each with its 4-byte length. */
const ED25519_BLOB_LENGTH = 4 + 11 + 4 + 32;

/**
 * ssh2 writes roughly 1 in 500 ed25519 private keys in a form its own parser
 * then rejects ("Malformed OpenSSH private key"), and now and then a public key
 * whose leading zero byte was dropped (31 bytes, which OpenSSH and the CRD's
 * pattern refuse); we keep only keys that parse whole, so a generated key can
 * always be loaded again and used anywhere.
 */
export function generateEd25519(options: { comment?: string } = {}): { private: string; public: string } {
  for (let i = 0; i < ATTEMPTS; i++) {
    const pair = utils.generateKeyPairSync('ed25519', options);
    const priv = utils.parseKey(pair.private);
    const pub = utils.parseKey(pair.public);
    if (priv instanceof Error || pub instanceof Error) continue;
    const blobs = [priv, pub].map((k) => (Array.isArray(k) ? k[0]! : k).getPublicSSH());
    if (blobs.every((b) => b.length === ED25519_BLOB_LENGTH)) return pair;
  }
  throw new Error(`could not generate a parseable ed25519 key in ${ATTEMPTS} attempts`);
}
