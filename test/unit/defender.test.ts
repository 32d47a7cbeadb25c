/**
 * The defender and the connection limits, with time under the test's control.
 */
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { Defender } from '../../src/ssh/defender.ts';
import { ConnectionLimits, type Ticket } from '../../src/ssh/connection-limits.ts';
import { CidrSet, parseCidr } from '../../src/ssh/cidr.ts';

function clock() {
  let now = 1_000_000;
  return { now: () => now, advance: (ms: number) => (now += ms) };
}

describe('defender', () => {
  const base = { enabled: true, threshold: 5, observationTimeMs: 60_000, banTimeMs: 300_000, trustedCIDRs: ['10.0.0.0/8', '2001:db8::/32'] };

  test('failed logins add up to a ban, which ends after banTime; one audit callback per ban', () => {
    const c = clock();
    const bans: { ip: string; score: number }[] = [];
    const d = new Defender({ ...base, now: c.now, onBan: (b) => bans.push(b) });
    for (let i = 0; i < 4; i++) assert.equal(d.record('203.0.113.7', 'login-failed'), false);
    assert.equal(d.isBanned('203.0.113.7'), false);
    assert.equal(d.record('203.0.113.7', 'login-failed'), true);
    assert.equal(d.isBanned('203.0.113.7'), true);
    assert.equal(d.isBanned('::ffff:203.0.113.7'), true, 'IPv4-mapped form of the same address');
    assert.equal(d.isBanned('203.0.113.8'), false, 'only that source');
    assert.deepEqual(bans.map((b) => [b.ip, b.score]), [['203.0.113.7', 5]]);
    assert.equal(d.bannedCount(), 1);
    c.advance(300_001);
    assert.equal(d.isBanned('203.0.113.7'), false);
  });

  test('scores older than observationTime do not count', () => {
    const c = clock();
    const d = new Defender({ ...base, now: c.now });
    for (let i = 0; i < 4; i++) d.record('198.51.100.1', 'login-failed');
    c.advance(61_000);
    assert.equal(d.score('198.51.100.1'), 0);
    assert.equal(d.record('198.51.100.1', 'login-failed'), false);
  });

  test('abuse scores more than a failed login', () => {
    const d = new Defender({ ...base, now: clock().now });
    d.record('198.51.100.2', 'grace-time');
    assert.equal(d.record('198.51.100.2', 'limit-exceeded'), true);
  });

  test('trusted CIDRs are never scored nor banned; disabled bans nobody', () => {
    const d = new Defender({ ...base, now: clock().now });
    for (let i = 0; i < 50; i++) d.record('10.1.2.3', 'protocol-error');
    for (let i = 0; i < 50; i++) d.record('2001:db8::5', 'protocol-error');
    assert.equal(d.isBanned('10.1.2.3'), false);
    assert.equal(d.isBanned('2001:db8::5'), false);
    const off = new Defender({ ...base, enabled: false });
    for (let i = 0; i < 50; i++) off.record('198.51.100.3', 'protocol-error');
    assert.equal(off.isBanned('198.51.100.3'), false);
  });
});

describe('CIDRs', () => {
  test('parse and match IPv4, IPv6 and bare addresses', () => {
    assert.deepEqual(parseCidr('10.0.0.0/8'), { address: '10.0.0.0', prefix: 8, family: 'ipv4' });
    assert.equal(parseCidr('10.0.0.0/33'), undefined);
    assert.equal(parseCidr('example.com'), undefined);
    assert.equal(parseCidr('1.2.3.4/8/9'), undefined);
    const set = new CidrSet(['192.0.2.0/24', '2001:db8::1']);
    assert.ok(set.has('192.0.2.200'));
    assert.ok(set.has('::ffff:192.0.2.1'));
    assert.ok(!set.has('192.0.3.1'));
    assert.ok(set.has('2001:db8::1'));
    assert.ok(!set.has('2001:db8::2'));
  });
});

describe('connection limits', () => {
  /** Timers the test fires by hand. */
  function timers() {
    const pending = new Set<{ fn: () => void }>();
    return {
      setTimer: (fn: () => void) => {
        const t = { fn };
        pending.add(t);
        return t;
      },
      clearTimer: (t: unknown) => pending.delete(t as { fn: () => void }),
      fireAll: () => [...pending].forEach((t) => (pending.delete(t), t.fn())),
      count: () => pending.size,
    };
  }
  const base = { loginGraceTimeMs: 30_000, maxUnauthenticated: 4, maxUnauthenticatedPerSource: 2, maxConnectionsPerUser: 2, maxConnectionsPerSource: 3 };

  test('unauthenticated connections are capped per source and in total', () => {
    const t = timers();
    const limits = new ConnectionLimits({ ...base, ...t });
    const admit = (ip: string) => limits.admit(ip, () => undefined);
    assert.equal(typeof admit('192.0.2.1'), 'object');
    assert.equal(typeof admit('192.0.2.1'), 'object');
    assert.equal(admit('192.0.2.1'), 'unauthenticated-per-source');
    assert.equal(typeof admit('192.0.2.2'), 'object');
    const last = admit('192.0.2.3') as Ticket;
    assert.equal(admit('192.0.2.4'), 'unauthenticated-total');
    last.closed();
    assert.equal(typeof admit('192.0.2.4'), 'object', 'a closed connection frees its place');
  });

  test('the login grace time ends connections that have not authenticated, and only those', () => {
    const t = timers();
    const limits = new ConnectionLimits({ ...base, ...t });
    const expired: string[] = [];
    const a = limits.admit('192.0.2.1', () => expired.push('a')) as Ticket;
    limits.admit('192.0.2.2', () => expired.push('b'));
    assert.equal(a.authenticated('alice'), undefined);
    assert.equal(t.count(), 1, 'authenticating stops the timer');
    t.fireAll();
    assert.deepEqual(expired, ['b']);
    assert.equal(limits.unauthenticated, 1);
  });

  test('authenticated connections are capped per user and per source', () => {
    const limits = new ConnectionLimits({ ...base, maxUnauthenticated: 100, maxUnauthenticatedPerSource: 100, ...timers() });
    const login = (ip: string, user: string) => (limits.admit(ip, () => undefined) as Ticket).authenticated(user);
    assert.equal(login('192.0.2.1', 'alice'), undefined);
    assert.equal(login('192.0.2.2', 'alice'), undefined);
    assert.equal(login('192.0.2.3', 'alice'), 'connections-per-user');
    assert.equal(login('192.0.2.1', 'bob'), undefined);
    assert.equal(login('192.0.2.1', 'carol'), undefined);
    assert.equal(login('192.0.2.1', 'dave'), 'connections-per-source');
  });
});
