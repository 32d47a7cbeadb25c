/**
 * The PROXY protocol header parser and the trusted-peer gate (src/ssh/proxy-protocol.ts), with
 * headers built byte by byte from the specification, and real sockets on 127.0.0.1 for the gate.
 */
import { test, describe } from 'node:test';
import assert from 'node:assert/strict';
import { connect, createServer, type Socket } from 'node:net';
import { acceptWithProxyProtocol, parseProxyHeader, ProxyProtocolError, TrustedProxies } from '../../src/ssh/proxy-protocol.ts';

const SIG = Buffer.from('0d0a0d0a000d0a515549540a', 'hex');

function v2(command: number, famProto: number, body: Buffer): Buffer {
  const head = Buffer.alloc(4);
  head[0] = 0x20 | command;
  head[1] = famProto;
  head.writeUInt16BE(body.length, 2);
  return Buffer.concat([SIG, head, body]);
}

function tcp4Body(src: number[], dst: number[], sport: number, dport: number): Buffer {
  const b = Buffer.alloc(12);
  Buffer.from(src).copy(b, 0);
  Buffer.from(dst).copy(b, 4);
  b.writeUInt16BE(sport, 8);
  b.writeUInt16BE(dport, 10);
  return b;
}

describe('parseProxyHeader v1', () => {
  test('TCP4 and TCP6 lines give the client address and the header length', () => {
    const line = 'PROXY TCP4 198.51.100.7 10.0.0.5 51234 2022\r\n';
    const r = parseProxyHeader(Buffer.from(`${line}SSH-2.0-OpenSSH`));
    assert.deepEqual(r, {
      header: { version: 1, kind: 'proxied', source: { ip: '198.51.100.7', port: 51234 }, destination: { ip: '10.0.0.5', port: 2022 } },
      length: line.length,
    });
    const six = parseProxyHeader(Buffer.from('PROXY TCP6 2001:db8::1 2001:db8::2 4000 22\r\n'));
    assert.deepEqual(six?.header, { version: 1, kind: 'proxied', source: { ip: '2001:db8::1', port: 4000 }, destination: { ip: '2001:db8::2', port: 22 } });
  });

  test('UNKNOWN keeps the connection address', () => {
    assert.deepEqual(parseProxyHeader(Buffer.from('PROXY UNKNOWN\r\n'))?.header, { version: 1, kind: 'local' });
  });

  test('an incomplete line asks for more bytes', () => {
    assert.equal(parseProxyHeader(Buffer.from('PROXY TCP4 1.2.3.4')), undefined);
    assert.equal(parseProxyHeader(Buffer.from('PRO')), undefined);
  });

  test('malformed lines are refused', () => {
    for (const bad of [
      'PROXY TCP4 1.2.3.4 5.6.7.8 1 2 3\r\n',
      'PROXY TCP4 1.2.3 5.6.7.8 1 2\r\n',
      'PROXY TCP4 2001:db8::1 5.6.7.8 1 2\r\n',
      'PROXY TCP4 1.2.3.4 5.6.7.8 65536 2\r\n',
      'PROXY TCP4 1.2.3.4 5.6.7.8 01 2\r\n',
      'PROXY UDP4 1.2.3.4 5.6.7.8 1 2\r\n',
      'SSH-2.0-OpenSSH_9.2\r\n',
    ]) {
      assert.throws(() => parseProxyHeader(Buffer.from(bad)), ProxyProtocolError, bad);
    }
    assert.throws(() => parseProxyHeader(Buffer.from(`PROXY TCP4 ${'1'.repeat(120)}`)), ProxyProtocolError);
  });
});

describe('parseProxyHeader v2', () => {
  test('TCP4 with trailing TLVs and SSH bytes after it', () => {
    const tlv = Buffer.from([0x04, 0x00, 0x02, 0xab, 0xcd]); // PP2_TYPE_NOOP
    const header = v2(1, 0x11, Buffer.concat([tcp4Body([203, 0, 113, 9], [10, 1, 2, 3], 40000, 2022), tlv]));
    const r = parseProxyHeader(Buffer.concat([header, Buffer.from('SSH-2.0-x\r\n')]));
    assert.deepEqual(r, {
      header: { version: 2, kind: 'proxied', source: { ip: '203.0.113.9', port: 40000 }, destination: { ip: '10.1.2.3', port: 2022 } },
      length: header.length,
    });
  });

  test('TCP6 addresses come out in compressed form', () => {
    const body = Buffer.alloc(36);
    Buffer.from('20010db8000000000000000000000001', 'hex').copy(body, 0);
    Buffer.from('fd000000000000000000000000000002', 'hex').copy(body, 16);
    body.writeUInt16BE(5555, 32);
    body.writeUInt16BE(22, 34);
    assert.deepEqual(parseProxyHeader(v2(1, 0x21, body))?.header, {
      version: 2,
      kind: 'proxied',
      source: { ip: '2001:db8::1', port: 5555 },
      destination: { ip: 'fd00::2', port: 22 },
    });
  });

  test('LOCAL (a health check) and UNSPEC keep the connection address', () => {
    assert.deepEqual(parseProxyHeader(v2(0, 0x00, Buffer.alloc(0)))?.header, { version: 2, kind: 'local' });
    assert.deepEqual(parseProxyHeader(v2(1, 0x00, Buffer.alloc(0)))?.header, { version: 2, kind: 'local' });
  });

  test('a partial header asks for more bytes', () => {
    const full = v2(1, 0x11, tcp4Body([1, 2, 3, 4], [5, 6, 7, 8], 1, 2));
    for (const n of [1, 12, 15, full.length - 1]) assert.equal(parseProxyHeader(full.subarray(0, n)), undefined, `${n} bytes`);
  });

  test('malformed headers are refused', () => {
    const bad = [
      Buffer.concat([SIG, Buffer.from([0x10, 0x11, 0x00, 0x0c]), Buffer.alloc(12)]), // version 1 in a v2 header
      Buffer.concat([SIG, Buffer.from([0x22, 0x11, 0x00, 0x0c]), Buffer.alloc(12)]), // command 2
      v2(1, 0x11, Buffer.alloc(8)), // TCP4 without room for its addresses
      v2(1, 0x21, Buffer.alloc(20)), // TCP6 likewise
      Buffer.concat([SIG, Buffer.from([0x21, 0x11, 0xff, 0xff])]), // 64 KiB of TLVs
    ];
    for (const b of bad) assert.throws(() => parseProxyHeader(b), ProxyProtocolError, b.toString('hex'));
  });
});

describe('TrustedProxies', () => {
  test('matches CIDR blocks and single addresses, IPv4-mapped IPv6 included; empty trusts nobody', () => {
    const t = new TrustedProxies(['10.0.0.0/8', '192.168.1.7', 'fd00::/8']);
    assert.equal(t.enabled, true);
    assert.equal(t.trusts('10.20.30.40'), true);
    assert.equal(t.trusts('::ffff:10.1.1.1'), true);
    assert.equal(t.trusts('192.168.1.7'), true);
    assert.equal(t.trusts('192.168.1.8'), false);
    assert.equal(t.trusts('fd12::1'), true);
    assert.equal(t.trusts('2001:db8::1'), false);
    const off = new TrustedProxies([]);
    assert.equal(off.enabled, false);
    assert.equal(off.trusts('10.0.0.1'), false);
  });
});

/** One connection through acceptWithProxyProtocol on a real socket: what was handed on, or why it was refused. */
async function accept(cidrs: string[], send: Buffer): Promise<{ peer?: string; rest?: string; refused?: string }> {
  const sockets: Socket[] = [];
  const server = createServer();
  try {
    return await new Promise((resolve, reject) => {
      server.on('connection', (socket) => {
        sockets.push(socket);
        acceptWithProxyProtocol(
          socket,
          { trusted: new TrustedProxies(cidrs), headerTimeoutMs: 2000, onRefused: (_s, reason) => resolve({ refused: reason }) },
          (ready: Socket) => {
            ready.once('data', (d: Buffer) => resolve({ peer: `${ready.remoteAddress}:${ready.remotePort}`, rest: d.toString() }));
            ready.resume();
          },
        );
      });
      server.on('error', reject);
      server.listen(0, '127.0.0.1', () => {
        const { port } = server.address() as { port: number };
        const c = connect(port, '127.0.0.1', () => c.write(send));
        sockets.push(c);
        c.on('error', () => {});
      });
    });
  } finally {
    for (const s of sockets) s.destroy();
    await new Promise((r) => server.close(r));
  }
}

describe('acceptWithProxyProtocol', () => {
  test('a trusted peer: the socket reports the client address and keeps the bytes after the header', async () => {
    const r = await accept(['127.0.0.0/8'], Buffer.from('PROXY TCP4 198.51.100.7 10.0.0.5 51234 2022\r\nSSH-2.0-test\r\n'));
    assert.deepEqual(r, { peer: '198.51.100.7:51234', rest: 'SSH-2.0-test\r\n' });
  });

  test('a trusted peer without a header is refused', async () => {
    const r = await accept(['127.0.0.1'], Buffer.from('SSH-2.0-test\r\n'));
    assert.match(r.refused ?? '', /does not start with a PROXY protocol header/);
  });

  test('an untrusted peer sending a header is refused; without one it is served as it is', async () => {
    const refused = await accept(['10.0.0.0/8'], v2(1, 0x11, tcp4Body([1, 2, 3, 4], [5, 6, 7, 8], 1, 2)));
    assert.match(refused.refused ?? '', /not in proxyProtocol.trustedCIDRs/);
    const plain = await accept([], Buffer.from('SSH-2.0-test\r\n'));
    assert.equal(plain.rest, 'SSH-2.0-test\r\n');
    assert.match(plain.peer ?? '', /^127\.0\.0\.1:\d+$/);
  });
});
