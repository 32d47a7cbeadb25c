import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { InvalidRequestError } from '../../src/storage/errors.ts';
import { basename, dirname, isWithin, join, normalizePath } from '../../src/storage/paths.ts';

describe('normalizePath', () => {
  const cases: [raw: string, cwd: string, expected: string][] = [
    ['/', '/', '/'],
    ['', '/', '/'],
    ['.', '/home', '/home'],
    ['', '/home', '/home'],
    ['a', '/', '/a'],
    ['a', '/x/y', '/x/y/a'],
    ['../../etc', '/', '/etc'],
    ['../../etc/passwd', '/a', '/etc/passwd'],
    ['/a/../../b', '/', '/b'],
    ['/../../../', '/', '/'],
    ['..', '/', '/'],
    ['a/./b//c/', '/', '/a/b/c'],
    ['//a///b//', '/', '/a/b'],
    ['./a/./', '/d', '/d/a'],
    ['a/b/../../..', '/d', '/'],
    ['/a/b/..', '/', '/a'],
    ['...', '/', '/...'],
    ['.hidden/..x', '/', '/.hidden/..x'],
    ['a\\..\\b', '/', '/a\\..\\b'],
    ['/ünïcødé/日本語/😀', '/', '/ünïcødé/日本語/😀'],
    ['with space/100%+#', '/', '/with space/100%+#'],
  ];
  for (const [raw, cwd, expected] of cases) {
    it(`${JSON.stringify(raw)} in ${cwd} → ${expected}`, () => {
      assert.equal(normalizePath(raw, cwd), expected);
    });
  }

  it('defaults cwd to /', () => {
    assert.equal(normalizePath('x/../y'), '/y');
  });

  it('rejects NUL bytes', () => {
    assert.throws(() => normalizePath('a\0b'), InvalidRequestError);
    assert.throws(() => normalizePath('/ok/\0'), InvalidRequestError);
  });

  it('is idempotent', () => {
    for (const [raw, cwd] of cases) {
      const once = normalizePath(raw, cwd);
      assert.equal(normalizePath(once), once);
      assert.equal(normalizePath(once, '/elsewhere'), once);
    }
  });
});

describe('path helpers', () => {
  it('basename', () => {
    assert.equal(basename('/'), '/');
    assert.equal(basename('/a'), 'a');
    assert.equal(basename('/a/b c'), 'b c');
  });

  it('dirname', () => {
    assert.equal(dirname('/'), '/');
    assert.equal(dirname('/a'), '/');
    assert.equal(dirname('/a/b/c'), '/a/b');
  });

  it('join', () => {
    assert.equal(join('/', 'a'), '/a');
    assert.equal(join('/a', 'b'), '/a/b');
  });

  it('isWithin', () => {
    assert.equal(isWithin('/a/b', '/a'), true);
    assert.equal(isWithin('/a', '/a'), true);
    assert.equal(isWithin('/ab', '/a'), false);
    assert.equal(isWithin('/anything', '/'), true);
  });
});
