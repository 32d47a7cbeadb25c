/** ed25519 key pairs in OpenSSH format, as ssh2 writes them. */
import ssh2 from 'ssh2';

const { utils } = ssh2;
const ATTEMPTS = 20;

/**
 * ssh2 writes roughly 1 in 500 ed25519 private keys in a form its own parser
 * then rejects ("Malformed OpenSSH private key"); we keep only keys that parse,
 * so a generated host key can always be loaded again.
 */
export function generateEd25519(): { private: string; public: string } {
  for (let i = 0; i < ATTEMPTS; i++) {
    const pair = utils.generateKeyPairSync('ed25519');
    if (!(utils.parseKey(pair.private) instanceof Error) && !(utils.parseKey(pair.public) instanceof Error)) return pair;
  }
  throw new Error(`could not generate a parseable ed25519 key in ${ATTEMPTS} attempts`);
}
