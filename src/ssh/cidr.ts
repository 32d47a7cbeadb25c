/**
 * Address and CIDR matching for the defender's trusted list and a user's
 * spec.allowedCIDRs, on node:net's BlockList.
 */
import { BlockList, isIP } from 'node:net';

/** One parsed CIDR: address, prefix length and family. */
export interface Cidr {
  address: string;
  prefix: number;
  family: 'ipv4' | 'ipv6';
}

/** "10.0.0.0/8", "2001:db8::/32" or a bare address (a /32 or /128); undefined if it is neither. */
export function parseCidr(text: string): Cidr | undefined {
  const [address = '', prefixText, ...rest] = text.trim().split('/');
  if (rest.length > 0) return undefined;
  const version = isIP(address);
  if (version === 0) return undefined;
  const max = version === 4 ? 32 : 128;
  if (prefixText !== undefined && !/^\d{1,3}$/.test(prefixText)) return undefined;
  const prefix = prefixText === undefined ? max : Number(prefixText);
  if (prefix > max) return undefined;
  return { address, prefix, family: version === 4 ? 'ipv4' : 'ipv6' };
}

/** An IPv4 address the socket reports as IPv4-mapped IPv6 (::ffff:1.2.3.4) becomes plain IPv4. */
export function normalizeAddress(ip: string): string {
  const mapped = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/i.exec(ip);
  return mapped?.[1] ?? ip;
}

/** A set of CIDRs that answers "is this address in one of them". */
export class CidrSet {
  readonly #list = new BlockList();
  readonly size: number;

  /** Entries that do not parse are skipped; config and user validation report them. */
  constructor(cidrs: readonly string[]) {
    let n = 0;
    for (const text of cidrs) {
      const c = parseCidr(text);
      if (!c) continue;
      this.#list.addSubnet(c.address, c.prefix, c.family);
      n++;
    }
    this.size = n;
  }

  has(ip: string): boolean {
    const address = normalizeAddress(ip);
    const version = isIP(address);
    if (version === 0) return false;
    return this.#list.check(address, version === 4 ? 'ipv4' : 'ipv6');
  }
}
