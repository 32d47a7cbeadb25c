/** MergedSource (src/users/merged-source.ts): several user sources as one. */
import { test, describe } from 'node:test';
import assert from 'node:assert/strict';
import { MergedSource } from '../../src/users/merged-source.ts';
import { PERMISSIONS, type User, type UserSource } from '../../src/users/user.ts';

class StaticSource implements UserSource {
  users = new Map<string, User>();
  ready = false;
  closed = false;
  #listeners = new Set<(u: string) => void>();
  get(u: string) {
    return this.users.get(u);
  }
  all() {
    return [...this.users.values()];
  }
  onChange(l: (u: string) => void) {
    this.#listeners.add(l);
    return () => this.#listeners.delete(l);
  }
  async close() {
    this.closed = true;
  }
  set(user: User | string) {
    if (typeof user === 'string') this.users.delete(user);
    else this.users.set(user.username, user);
    for (const l of this.#listeners) l(typeof user === 'string' ? user : user.username);
  }
}

function user(username: string, source: string): User {
  return { username, disabled: false, publicKeys: [], s3: { bucket: 'b', keyPrefix: '' }, permissions: new Set(PERMISSIONS), source };
}

function capture() {
  const lines: { level: string; msg: string }[] = [];
  return { lines, warn: (_: object, msg: string) => lines.push({ level: 'warn', msg }), error: (_: object, msg: string) => lines.push({ level: 'error', msg }) };
}

describe('MergedSource', () => {
  test('the first source wins a duplicate name, the conflict is logged once, and the other takes over when it goes', () => {
    const files = new StaticSource();
    const kube = new StaticSource();
    const log = capture();
    const merged = new MergedSource([{ name: 'users.directory', source: files }, { name: 'users.kubernetes', source: kube }], log);
    const changes: string[] = [];
    merged.onChange((u) => changes.push(u));
    kube.set(user('alice', 'kube'));
    files.set(user('alice', 'file'));
    kube.set(user('alice', 'kube'));
    assert.equal(merged.get('alice')?.source, 'file');
    assert.deepEqual(merged.all().map((u) => u.source), ['file']);
    assert.equal(log.lines.filter((l) => /alice is defined in users\.directory, users\.kubernetes/.test(l.msg)).length, 1);
    files.set('alice');
    assert.equal(merged.get('alice')?.source, 'kube');
    assert.deepEqual(changes, ['alice', 'alice', 'alice', 'alice']);
  });

  test('ready when every source is; close closes them all; a throwing listener is logged', async () => {
    const a = new StaticSource();
    const b = new StaticSource();
    const log = capture();
    const merged = new MergedSource([{ name: 'a', source: a }, { name: 'b', source: b }], log);
    a.ready = true;
    assert.equal(merged.ready, false);
    b.ready = true;
    assert.equal(merged.ready, true);
    merged.onChange(() => {
      throw new Error('boom');
    });
    a.set(user('x', 'a'));
    assert.equal(log.lines.at(-1)?.level, 'error');
    await merged.close();
    assert.equal(a.closed && b.closed, true);
  });
});
