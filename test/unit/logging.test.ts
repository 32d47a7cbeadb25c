import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createLogger } from '../../src/cli/logger.ts';
import { auditEvents, combineEvents } from '../../src/session/audit.ts';
import { loadConfig } from '../../src/config/load.ts';

/** A logger whose JSON lines land in `lines`. */
function capture(level = 'info') {
  const lines: string[] = [];
  const log = createLogger(level, { write: (line: string) => void lines.push(line) });
  return { log, lines };
}

test('secrets never reach the log: the config object, an auth context, a user, SDK request headers', () => {
  const { log, lines } = capture();
  const config = loadConfig({
    env: {
      S3SFTP_S3_BUCKET: 'files',
      S3SFTP_S3_CREDENTIALS_ACCESSKEYID: 'AKIAEXAMPLE',
      S3SFTP_S3_CREDENTIALS_SECRETACCESSKEY: 'secret-key-value',
      S3SFTP_S3_CREDENTIALS_SESSIONTOKEN: 'session-token-value',
    },
  });
  log.info({ config }, 'config');
  log.info({ s3: config.s3 }, 's3');
  log.info({ credentials: config.s3.credentials }, 'credentials');
  log.info({ ctx: { method: 'password', username: 'ann', password: 'hunter2-password' } }, 'auth');
  log.info({ ctx: { method: 'publickey', username: 'ann', key: { algo: 'ssh-ed25519', data: 'key-blob-value' }, signature: 'sig-value', blob: 'signed-blob-value' } }, 'auth');
  log.info({ user: { username: 'ann', passwordHash: '$argon2id$hash-value' } }, 'user');
  log.info({ err: { $response: { headers: { authorization: 'AWS4-HMAC-SHA256 Credential=x', 'x-amz-security-token': 'token-value' } } } }, 'sdk');
  log.info({ token: 'sa-token-value' }, 'kube');
  const text = lines.join('');
  for (const secret of ['secret-key-value', 'session-token-value', 'hunter2-password', 'key-blob-value', 'sig-value', 'signed-blob-value', 'hash-value', 'AWS4-HMAC', 'token-value', 'sa-token-value']) {
    assert.ok(!text.includes(secret), `${secret} leaked: ${text}`);
  }
  assert.match(text, /\[redacted\]/);
  // What is not secret stays readable.
  assert.match(text, /AKIAEXAMPLE/);
  assert.match(text, /"username":"ann"/);
});

test('audit: one line per finished transfer and per operation, with what an auditor needs', () => {
  const { log, lines } = capture();
  const events = auditEvents(log.child({ conn: 'c1', remote: '10.0.0.1:5000', user: 'ann' }));
  events.transferDone?.({ user: 'ann', direction: 'upload', path: '/in/a.csv', bytes: 1234, seconds: 1.5, ok: true });
  events.transferDone?.({ user: 'ann', direction: 'download', path: '/out/b.csv', bytes: 10, seconds: 0.1, ok: false });
  events.operation?.({ user: 'ann', op: 'rename', path: '/in/a.csv', target: '/done/a.csv', ok: true });
  events.operation?.({ user: 'ann', op: 'remove', path: '/x', ok: false });
  const parsed = lines.map((l) => JSON.parse(l) as Record<string, unknown>);
  assert.equal(parsed.length, 4);
  for (const p of parsed) {
    assert.equal(p.audit, true);
    assert.equal(p.user, 'ann');
    assert.equal(p.conn, 'c1');
    assert.equal(p.remote, '10.0.0.1:5000');
  }
  assert.deepEqual(
    { ...parsed[0], time: undefined, pid: undefined, hostname: undefined },
    { ...parsed[0], time: undefined, pid: undefined, hostname: undefined, event: 'transfer', direction: 'upload', path: '/in/a.csv', bytes: 1234, durationSeconds: 1.5, outcome: 'success' },
  );
  assert.equal(parsed[1]?.outcome, 'failure');
  assert.equal(parsed[2]?.event, 'rename');
  assert.equal(parsed[2]?.target, '/done/a.csv');
  assert.equal(parsed[3]?.outcome, 'failure');
  // The user is in the line once, not twice (duplicate JSON keys confuse log pipelines).
  assert.equal((lines[0]?.match(/"user":/g) ?? []).length, 1);
});

test('combined events reach every listener even when one throws', () => {
  const seen: string[] = [];
  const events = combineEvents(
    { transferDone: () => { throw new Error('boom'); } },
    undefined,
    { transferDone: (t) => void seen.push(t.path) },
  );
  events.transferDone?.({ user: 'u', direction: 'upload', path: '/p', bytes: 1, seconds: 0, ok: true });
  assert.deepEqual(seen, ['/p']);
});
