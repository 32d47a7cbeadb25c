/**
 * PROXY protocol v1 and v2 (haproxy.org/download/2.6/doc/proxy-protocol.txt): a load balancer
 * that hides the client's address (the AWS NLB with `ip` targets, HAProxy) sends one header at
 * the start of the TCP stream naming the real source and destination. The header is read here,
 * before the socket reaches ssh2, and the socket then reports the client's address as its
 * remoteAddress, so logs, audit lines, metrics and per-IP rules see the client.
 *
 * Only peers in proxyProtocol.trustedCIDRs may send a header, and from them one is required: a
 * header from anyone else would let a client claim any address. Untrusted peers are served as
 * they come; if their first bytes are a PROXY header, the connection is refused.
 */
import { BlockList, isIP, type Socket } from 'node:net';

/** An address taken from a header. */
export interface ProxyAddress {
  ip: string;
  port: number;
}

/**
 * A parsed header. `proxied` carries the client's address; `local` means the balancer speaks for
 * itself (v2 LOCAL, e.g. a health check; v1 UNKNOWN; v2 address families other than TCP/IP), so
 * the connection's own address stands.
 */
export type ProxyHeader =
  | { version: 1 | 2; kind: 'proxied'; source: ProxyAddress; destination: ProxyAddress }
  | { version: 1 | 2; kind: 'local' };

/** The bytes are not a valid PROXY header. */
export class ProxyProtocolError extends Error {
  override name = 'ProxyProtocolError';
}

const V2_SIGNATURE = Buffer.from([0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d, 0x0a, 0x51, 0x55, 0x49, 0x54, 0x0a]);
const V1_PREFIX = Buffer.from('PROXY ');
/** The spec's longest v1 line, CRLF included. */
const V1_MAX = 107;
/** TLVs can make v2 headers long; nothing legitimate comes near this. */
const V2_MAX_PAYLOAD = 4096;

/** True when `buf` starts like a PROXY header (or is a prefix of a signature); false when it cannot be one. */
export function looksLikeProxyHeader(buf: Buffer): boolean {
  const n = Math.min(buf.length, V2_SIGNATURE.length);
  if (buf.subarray(0, n).equals(V2_SIGNATURE.subarray(0, n))) return true;
  const m = Math.min(buf.length, V1_PREFIX.length);
  return buf.subarray(0, m).equals(V1_PREFIX.subarray(0, m));
}

/**
 * Parses a header at the start of `buf`: the header and its length in bytes, or undefined when
 * more bytes are needed. Throws ProxyProtocolError when the bytes cannot be a valid header.
 */
export function parseProxyHeader(buf: Buffer): { header: ProxyHeader; length: number } | undefined {
  if (buf.length === 0) return undefined;
  if (!looksLikeProxyHeader(buf)) throw new ProxyProtocolError('the connection does not start with a PROXY protocol header');
  if (buf[0] === V2_SIGNATURE[0]) return parseV2(buf);
  return parseV1(buf);
}

function parseV1(buf: Buffer): { header: ProxyHeader; length: number } | undefined {
  const end = buf.indexOf('\r\n');
  if (end < 0) {
    if (buf.length >= V1_MAX) throw new ProxyProtocolError('PROXY v1 header longer than 107 bytes');
    return undefined;
  }
  if (end + 2 > V1_MAX) throw new ProxyProtocolError('PROXY v1 header longer than 107 bytes');
  const length = end + 2;
  const parts = buf.subarray(0, end).toString('latin1').split(' ');
  const [, family, srcIp, dstIp, srcPort, dstPort, ...extra] = parts;
  if (family === 'UNKNOWN') return { header: { version: 1, kind: 'local' }, length };
  if (family !== 'TCP4' && family !== 'TCP6') throw new ProxyProtocolError(`PROXY v1 header with unknown protocol ${JSON.stringify(family ?? '')}`);
  if (extra.length > 0 || dstPort === undefined) throw new ProxyProtocolError('PROXY v1 header must have exactly 6 fields');
  const want = family === 'TCP4' ? 4 : 6;
  if (isIP(srcIp ?? '') !== want || isIP(dstIp ?? '') !== want) throw new ProxyProtocolError(`PROXY v1 header with an invalid ${family} address`);
  return {
    header: { version: 1, kind: 'proxied', source: { ip: srcIp ?? '', port: v1Port(srcPort) }, destination: { ip: dstIp ?? '', port: v1Port(dstPort) } },
    length,
  };
}

function v1Port(text: string | undefined): number {
  // The spec forbids leading zeros; a strict parser refuses what a sloppy one would guess at.
  if (!text || !/^(0|[1-9]\d{0,4})$/.test(text) || Number(text) > 65535) throw new ProxyProtocolError('PROXY v1 header with an invalid port');
  return Number(text);
}

function parseV2(buf: Buffer): { header: ProxyHeader; length: number } | undefined {
  if (buf.length < 16) return undefined;
  const verCmd = buf[12] ?? 0;
  if (verCmd >> 4 !== 2) throw new ProxyProtocolError(`PROXY v2 header with version ${verCmd >> 4}`);
  const command = verCmd & 0x0f;
  if (command > 1) throw new ProxyProtocolError(`PROXY v2 header with unknown command ${command}`);
  const famProto = buf[13] ?? 0;
  const payload = buf.readUInt16BE(14);
  if (payload > V2_MAX_PAYLOAD) throw new ProxyProtocolError(`PROXY v2 header of ${payload} bytes is too long`);
  const length = 16 + payload;
  if (buf.length < length) return undefined;
  if (command === 0) return { header: { version: 2, kind: 'local' }, length };
  const body = buf.subarray(16, length);
  const family = famProto >> 4;
  const transport = famProto & 0x0f;
  // UNSPEC, UNIX sockets and UDP carry nothing an SSH connection can use as its peer.
  if (transport !== 1 || (family !== 1 && family !== 2)) return { header: { version: 2, kind: 'local' }, length };
  if (family === 1) {
    if (body.length < 12) throw new ProxyProtocolError('PROXY v2 TCP4 header too short for its addresses');
    return {
      header: {
        version: 2,
        kind: 'proxied',
        source: { ip: ipv4(body.subarray(0, 4)), port: body.readUInt16BE(8) },
        destination: { ip: ipv4(body.subarray(4, 8)), port: body.readUInt16BE(10) },
      },
      length,
    };
  }
  if (body.length < 36) throw new ProxyProtocolError('PROXY v2 TCP6 header too short for its addresses');
  return {
    header: {
      version: 2,
      kind: 'proxied',
      source: { ip: ipv6(body.subarray(0, 16)), port: body.readUInt16BE(32) },
      destination: { ip: ipv6(body.subarray(16, 32)), port: body.readUInt16BE(34) },
    },
    length,
  };
}

function ipv4(b: Buffer): string {
  return [...b].join('.');
}

/** The compressed text form (as net.Socket reports addresses), via the URL parser's normalization. */
function ipv6(b: Buffer): string {
  const groups: string[] = [];
  for (let i = 0; i < 16; i += 2) groups.push(b.readUInt16BE(i).toString(16));
  return new URL(`http://[${groups.join(':')}]/`).hostname.slice(1, -1);
}

/** Which peers may send a header. */
export class TrustedProxies {
  readonly #list = new BlockList();
  readonly #empty: boolean;

  constructor(cidrs: readonly string[]) {
    this.#empty = cidrs.length === 0;
    for (const cidr of cidrs) {
      const [address = '', bits] = cidr.split('/');
      const type = isIP(address) === 6 ? 'ipv6' : 'ipv4';
      if (bits === undefined) this.#list.addAddress(address, type);
      else this.#list.addSubnet(address, Number(bits), type);
    }
  }

  /** False when PROXY protocol is off. */
  get enabled(): boolean {
    return !this.#empty;
  }

  trusts(ip: string | undefined): boolean {
    if (this.#empty || !ip) return false;
    // An IPv4 peer on a dual-stack listener shows as ::ffff:a.b.c.d.
    const mapped = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/i.exec(ip)?.[1];
    if (mapped) return this.#list.check(mapped, 'ipv4');
    return this.#list.check(ip, isIP(ip) === 6 ? 'ipv6' : 'ipv4');
  }
}

export interface AcceptOptions {
  trusted: TrustedProxies;
  /** How long a trusted peer has to send its header. */
  headerTimeoutMs?: number;
  /** Called with a refused connection's reason; the socket is already destroyed. */
  onRefused(socket: Socket, reason: string): void;
}

/**
 * Reads the PROXY header of a trusted peer, then hands the socket on with its remoteAddress and
 * remotePort set to the client's; sockets of untrusted peers are handed on at once, and destroyed
 * if they start with a header. Bytes after the header stay in the socket for ssh2.
 */
export function acceptWithProxyProtocol(socket: Socket, opts: AcceptOptions, handOn: (socket: Socket) => void): void {
  if (!opts.trusted.trusts(socket.remoteAddress)) {
    // Prepended so it sees the first bytes before ssh2 parses them.
    socket.prependOnceListener('data', (chunk: Buffer) => {
      if (chunk.length > 0 && looksLikeProxyHeader(chunk.subarray(0, 6))) {
        socket.destroy();
        opts.onRefused(socket, 'PROXY protocol header from an address not in proxyProtocol.trustedCIDRs');
      }
    });
    handOn(socket);
    return;
  }
  let buffered = Buffer.alloc(0);
  const timer = setTimeout(() => refuse('no PROXY protocol header within the time limit'), opts.headerTimeoutMs ?? 10_000);
  const refuse = (reason: string) => {
    cleanup();
    socket.destroy();
    opts.onRefused(socket, reason);
  };
  const cleanup = () => {
    clearTimeout(timer);
    socket.off('data', onData);
    socket.off('close', onClose);
  };
  const onClose = () => cleanup();
  const onData = (chunk: Buffer) => {
    buffered = Buffer.concat([buffered, chunk]);
    let parsed;
    try {
      parsed = parseProxyHeader(buffered);
    } catch (err) {
      refuse((err as Error).message);
      return;
    }
    if (!parsed) return;
    cleanup();
    socket.pause();
    const rest = buffered.subarray(parsed.length);
    if (rest.length > 0) socket.unshift(rest);
    if (parsed.header.kind === 'proxied') setPeer(socket, parsed.header.source);
    handOn(socket);
  };
  socket.on('data', onData);
  socket.on('close', onClose);
  socket.on('error', () => {}); // reported by ssh2 once handed on; before that, 'close' follows
}

/** Makes the socket report the client's address (ssh2 and our logs read remoteAddress). */
function setPeer(socket: Socket, source: ProxyAddress): void {
  const family = isIP(source.ip) === 6 ? 'IPv6' : 'IPv4';
  Object.defineProperty(socket, 'remoteAddress', { value: source.ip, configurable: true });
  Object.defineProperty(socket, 'remotePort', { value: source.port, configurable: true });
  Object.defineProperty(socket, 'remoteFamily', { value: family, configurable: true });
}
