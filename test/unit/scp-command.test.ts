import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { parseScpCommand, ScpCommandError, type ScpCommand } from '../../src/scp/command.ts';

function cmd(partial: Partial<ScpCommand>): ScpCommand {
  return { mode: 'sink', recursive: false, preserveTimes: false, targetIsDirectory: false, paths: [], ...partial };
}

describe('parseScpCommand: what OpenSSH and other clients send', () => {
  const cases: [line: string, expected: ScpCommand][] = [
    ['scp -t /upload', cmd({ mode: 'sink', paths: ['/upload'] })],
    ['scp -t .', cmd({ mode: 'sink', paths: ['.'] })],
    ['scp -v -r -p -d -t /a', cmd({ mode: 'sink', recursive: true, preserveTimes: true, targetIsDirectory: true, paths: ['/a'] })],
    ['scp -r -t -- -dash', cmd({ mode: 'sink', recursive: true, paths: ['-dash'] })],
    ['scp -prt dir', cmd({ mode: 'sink', recursive: true, preserveTimes: true, paths: ['dir'] })],
    ['scp -q -f a.txt', cmd({ mode: 'source', paths: ['a.txt'] })],
    ['scp -f a b c', cmd({ mode: 'source', paths: ['a', 'b', 'c'] })],
    ['scp -p -f /x/y.bin', cmd({ mode: 'source', preserveTimes: true, paths: ['/x/y.bin'] })],
    ['/usr/bin/scp -f file', cmd({ mode: 'source', paths: ['file'] })],
    ['  scp   -t   x  ', cmd({ mode: 'sink', paths: ['x'] })],
    ['scp\t-f\tx', cmd({ mode: 'source', paths: ['x'] })],
  ];
  for (const [line, expected] of cases) {
    it(JSON.stringify(line), () => assert.deepEqual(parseScpCommand(line), expected));
  }
});

describe('parseScpCommand: shell quoting is undone, nothing is expanded', () => {
  const cases: [line: string, paths: string[]][] = [
    [`scp -f 'with space.txt'`, ['with space.txt']],
    [`scp -f "with space.txt"`, ['with space.txt']],
    [`scp -f with\\ space.txt`, ['with space.txt']],
    [`scp -f 'it'\\''s'`, ["it's"]],
    [`scp -f "a \\"q\\" \\\\ b"`, ['a "q" \\ b']],
    [`scp -f "keep\\n"`, ['keep\\n']],
    [`scp -f ünïcødé/日本.txt`, ['ünïcødé/日本.txt']],
    [`scp -f '*.txt' file?.bin [ab]`, ['*.txt', 'file?.bin', '[ab]']],
    [`scp -f ~`, ['/']],
    [`scp -f ~/docs/a.txt`, ['/docs/a.txt']],
    [`scp -f '~/quoted'`, ['~/quoted']],
    [`scp -f ~alice a~b`, ['~alice', 'a~b']],
    [`scp -f 'semi;colon' "pipe|amp&" 'dollar$'`, ['semi;colon', 'pipe|amp&', 'dollar$']],
    [`scp -f a#b`, ['a#b']],
    [`scp -f ''`, ['']],
  ];
  for (const [line, paths] of cases) {
    it(JSON.stringify(line), () => assert.deepEqual(parseScpCommand(line).paths, paths));
  }
});

describe('parseScpCommand: refusals carry a message for the client', () => {
  const cases: [line: string, message: RegExp][] = [
    ['ls', /SFTP and SCP only.*no shell/],
    ['ls -la /', /SFTP and SCP only/],
    ['rm -rf / ; scp -t x', /SFTP and SCP only/],
    ['sh -c "scp -t x"', /SFTP and SCP only/],
    ['', /SFTP and SCP only/],
    ['scpx -t a', /SFTP and SCP only/],
    ['echo scp', /SFTP and SCP only/],
    ['scp', /-t or -f/],
    ['scp a b', /-t or -f/],
    ['scp -r /x', /-t or -f/],
    ['scp -t', /no path/],
    ['scp -f', /no path/],
    ['scp -t a b', /ambiguous target/],
    ['scp -t -f a', /cannot be used together/],
    ['scp -tf a', /cannot be used together/],
    ['scp -S /bin/sh -t a', /option -S is not supported/],
    ['scp -o ProxyCommand=x -t a', /option -o is not supported/],
    ['scp -3 -t a', /option -3 is not supported/],
    ['scp -T -f a', /option -T is not supported/],
    ['scp -t a; rm -rf /', /shell syntax \(";"\)/],
    ['scp -t a && ls', /shell syntax/],
    ['scp -f a | nc x 1', /shell syntax/],
    ['scp -f $(id)', /shell syntax/],
    ['scp -f `id`', /shell syntax/],
    ['scp -f a > /tmp/x', /shell syntax/],
    ['scp -f "$HOME/x"', /shell expansion/],
    ['scp -f #comment', /comments/],
    ["scp -f 'open", /unterminated single quote/],
    ['scp -f "open', /unterminated double quote/],
    ['scp -f trailing\\', /backslash/],
    ['scp -t a\0b', /NUL/],
    [`scp -f ${'x'.repeat(70_000)}`, /too long/],
  ];
  for (const [line, message] of cases) {
    it(JSON.stringify(line.slice(0, 60)), () => {
      assert.throws(
        () => parseScpCommand(line),
        (err: unknown) => err instanceof ScpCommandError && message.test(err.message),
      );
    });
  }

  it('a refused command is shown (shortened) in the message', () => {
    assert.throws(() => parseScpCommand(`cat ${'y'.repeat(200)}`), (err: unknown) => {
      const text = (err as Error).message;
      return text.includes('"cat yyy') && text.includes('...') && text.length < 250;
    });
  });
});
