/**
 * The algorithms the SSH server offers. ssh2's defaults include SHA-1 MACs
 * (hmac-sha1, hmac-sha1-etm) and, with an RSA host key, ssh-rsa (SHA-1)
 * signatures; these lists leave out SHA-1, CBC ciphers and Diffie-Hellman
 * groups under 2048 bits. docs/security.md documents the same lists and
 * test/integration/hardening.test.ts reads them back from a live KEXINIT.
 */
import { createRequire } from 'node:module';

/** Key exchange: curve25519, NIST ECDH, DH group exchange and fixed groups of 2048 bits and more, all SHA-2. */
export const DEFAULT_KEX: readonly string[] = [
  'curve25519-sha256',
  'curve25519-sha256@libssh.org',
  'ecdh-sha2-nistp256',
  'ecdh-sha2-nistp384',
  'ecdh-sha2-nistp521',
  'diffie-hellman-group-exchange-sha256',
  'diffie-hellman-group16-sha512',
  'diffie-hellman-group18-sha512',
  'diffie-hellman-group14-sha256',
];

/** Host key signatures; only those matching a configured host key are offered. */
export const DEFAULT_HOST_KEY_ALGORITHMS: readonly string[] = [
  'ssh-ed25519',
  'ecdsa-sha2-nistp256',
  'ecdsa-sha2-nistp384',
  'ecdsa-sha2-nistp521',
  'rsa-sha2-512',
  'rsa-sha2-256',
];

/** AEAD and CTR ciphers; no CBC, no arcfour. */
export const DEFAULT_CIPHERS: readonly string[] = [
  'aes128-gcm@openssh.com',
  'aes256-gcm@openssh.com',
  'chacha20-poly1305@openssh.com',
  'aes128-ctr',
  'aes192-ctr',
  'aes256-ctr',
];

/** SHA-2 MACs, encrypt-then-MAC first (unused with the AEAD ciphers). */
export const DEFAULT_MACS: readonly string[] = [
  'hmac-sha2-256-etm@openssh.com',
  'hmac-sha2-512-etm@openssh.com',
  'hmac-sha2-256',
  'hmac-sha2-512',
];

/** ssh2's Server `algorithms` option from the configured lists. */
export function serverAlgorithms(lists: { kex: readonly string[]; hostKey: readonly string[]; cipher: readonly string[]; mac: readonly string[] }): {
  kex: string[];
  serverHostKey: string[];
  cipher: string[];
  hmac: string[];
} {
  return { kex: [...lists.kex], serverHostKey: [...lists.hostKey], cipher: [...lists.cipher], hmac: [...lists.mac] };
}

interface OfferLists {
  kex: { array: string[] };
  serverHostKey: { array: string[] };
  cs: Record<'cipher' | 'mac' | 'compress' | 'lang', { array: string[] }>;
  sc: Record<'cipher' | 'mac' | 'compress' | 'lang', { array: string[] }>;
}
type KexInitCtor = new (obj: unknown) => { lists: OfferLists };

const KEX_MODULE_VERSION = '1.17.0';
const ssh2Require = createRequire(import.meta.url);
const kexInit: KexInitCtor | undefined =
  (ssh2Require('ssh2/package.json') as { version: string }).version === KEX_MODULE_VERSION
    ? (ssh2Require('ssh2/lib/protocol/kex.js') as { KexInit: KexInitCtor }).KexInit
    : undefined;
const restricted = new WeakMap<object, object>();

/**
 * ssh2 1.17.0 offers `ssh-rsa` (SHA-1) signatures for an RSA host key even when the configured
 * list leaves it out (lib/server.js falls back to "lowest priority" instead of "not at all").
 * Called from the 'connection' listener, before the server's KEXINIT goes out, this swaps the
 * connection's offer for one with only the allowed host key algorithms. Pinned to ssh2 1.17.0
 * (private API: `_protocol._offer`); returns false when it did nothing.
 */
export function restrictHostKeyOffer(client: unknown, allowed: readonly string[]): boolean {
  const proto = (client as { _protocol?: { _offer?: { lists?: OfferLists } } })._protocol;
  const offer = proto?._offer;
  const lists = offer?.lists;
  if (!kexInit || !proto || !offer || !lists?.serverHostKey?.array) return false;
  const cached = restricted.get(offer);
  if (cached) {
    proto._offer = cached as typeof offer;
    return true;
  }
  const hostKeys = lists.serverHostKey.array.filter((a) => allowed.includes(a));
  if (hostKeys.length === lists.serverHostKey.array.length) return false;
  const pick = (side: OfferLists['cs']) => ({ cipher: side.cipher.array, mac: side.mac.array, compress: side.compress.array, lang: side.lang.array });
  const replacement = new kexInit({ kex: lists.kex.array, serverHostKey: hostKeys, cs: pick(lists.cs), sc: pick(lists.sc) });
  restricted.set(offer, replacement);
  proto._offer = replacement as typeof offer;
  return true;
}
