import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import {
  ChecksumCommandError,
  checksumCommandName,
  checksumLine,
  parseChecksumCommand,
} from '../../src/exec/checksum.ts';

describe('checksum command lines', () => {
  test('recognises md5sum, sha1sum and sha256sum, with or without a directory', () => {
    assert.equal(checksumCommandName('md5sum /a'), 'md5sum');
    assert.equal(checksumCommandName('  /usr/bin/sha256sum x'), 'sha256sum');
    assert.equal(checksumCommandName('sha1sum'), 'sha1sum');
    for (const other of ['scp -t /x', 'md5 -r x', 'md5sumx a', 'echo ${ShellId}%ComSpec%', 'rclone md5sum', '']) {
      assert.equal(checksumCommandName(other), undefined, other);
    }
  });

  test('paths are split like a shell splits them, as rclone escapes them', () => {
    assert.deepEqual(parseChecksumCommand('md5sum /dir/with\\ space/a\\&b.txt').paths, ['/dir/with space/a&b.txt']);
    assert.deepEqual(parseChecksumCommand(`sha1sum '/it'\\''s' "x y"`).paths, ["/it's", 'x y']);
    assert.deepEqual(parseChecksumCommand("md5sum /new'\n'line").paths, ['/new\nline']);
    assert.deepEqual(parseChecksumCommand('sha256sum -- -dash ~/home').paths, ['-dash', '/home']);
    assert.equal(parseChecksumCommand('sha256sum a').algorithm, 'sha256');
  });

  test('no path means standard input, as coreutils does', () => {
    assert.deepEqual(parseChecksumCommand('md5sum').paths, ['-']);
    assert.deepEqual(parseChecksumCommand('md5sum -').paths, ['-']);
  });

  test('options, shell syntax and expansions are refused with a message', () => {
    for (const line of ['md5sum -c list', 'md5sum --tag a', 'md5sum a; rm -rf /', 'md5sum $(id)', 'md5sum a | tee', 'md5sum "unterminated']) {
      assert.throws(() => parseChecksumCommand(line), ChecksumCommandError, line);
    }
    assert.throws(() => parseChecksumCommand('md5sum -c x'), /md5sum: option -c is not supported/);
  });

  test('output lines follow coreutils, escaping backslashes and newlines', () => {
    assert.equal(checksumLine('abc', 'a b.txt'), 'abc  a b.txt\n');
    assert.equal(checksumLine('abc', 'back\\slash'), '\\abc  back\\\\slash\n');
    assert.equal(checksumLine('abc', 'new\nline'), '\\abc  new\\nline\n');
  });
});
