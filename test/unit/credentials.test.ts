/**
 * The credential cache and its refresh rules under a controlled clock; the identities (base,
 * server role, user roles) and the client pool's keys; the new s3.credentials.* config keys. No
 * network: STS is replaced by functions (the wire path is tested in integration/aws-identity).
 */
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { pino } from 'pino';
import { ConfigError, loadConfig } from '../../src/config/load.ts';
import {
  CredentialsError,
  Identities,
  RefreshingCredentials,
  type AssumeRoleParams,
  type AwsCredentials,
  type CredentialsProvider,
} from '../../src/storage/s3/credentials.ts';
import { ClientPool } from '../../src/storage/s3/client-pool.ts';
import { toStorageError } from '../../src/storage/s3/errors.ts';
import { BackendError, PermissionDeniedError } from '../../src/storage/errors.ts';

const MIN = 60_000;
const silent = pino({ level: 'silent' });

/** A clock tests move by hand. */
function manualClock(start = 1_000_000) {
  let now = start;
  return { now: () => now, advance: (ms: number) => (now += ms) };
}

/** A fetch that hands out numbered credentials valid for `ttlMs`, or fails while `fail` is set. */
function fakeFetch(clock: { now(): number }, ttlMs = 60 * MIN) {
  const state = {
    calls: 0,
    fail: undefined as string | undefined,
    /** Resolves the pending call when set (to test concurrency). */
    gate: undefined as Promise<void> | undefined,
    async fetch(): Promise<AwsCredentials> {
      state.calls++;
      const n = state.calls;
      if (state.gate) await state.gate;
      if (state.fail) throw new CredentialsError(state.fail, { roleArn: 'arn:aws:iam::1:role/r', code: 'AccessDenied' });
      return { accessKeyId: `AK${n}`, secretAccessKey: 's', sessionToken: `t${n}`, expiration: new Date(clock.now() + ttlMs) };
    },
  };
  return state;
}

describe('RefreshingCredentials', () => {
  test('fetches once, serves from cache, and renews in the background 5 minutes before expiry', async () => {
    const clock = manualClock();
    const sts = fakeFetch(clock);
    const creds = new RefreshingCredentials({ fetch: () => sts.fetch(), name: 'role r', log: silent, clock });
    assert.equal((await creds.get()).accessKeyId, 'AK1');
    clock.advance(54 * MIN);
    assert.equal((await creds.get()).accessKeyId, 'AK1');
    assert.equal(sts.calls, 1);
    // 4 minutes left: the caller gets the still-valid ones at once, a renewal starts.
    clock.advance(2 * MIN);
    assert.equal((await creds.get()).accessKeyId, 'AK1');
    assert.equal(sts.calls, 2);
    await new Promise((r) => setImmediate(r));
    assert.equal((await creds.get()).accessKeyId, 'AK2');
    assert.equal(sts.calls, 2);
  });

  test('with no usable credentials callers wait, and concurrent callers share one fetch', async () => {
    const clock = manualClock();
    const sts = fakeFetch(clock);
    let open!: () => void;
    sts.gate = new Promise((r) => (open = r));
    const creds = new RefreshingCredentials({ fetch: () => sts.fetch(), name: 'role r', log: silent, clock });
    const waiting = Promise.all([creds.get(), creds.get(), creds.get()]);
    open();
    assert.deepEqual((await waiting).map((c) => c.accessKeyId), ['AK1', 'AK1', 'AK1']);
    assert.equal(sts.calls, 1);
    sts.gate = undefined;
    // Within 15 s of expiry they are not handed out any more: the caller waits for new ones.
    clock.advance(60 * MIN - 10_000);
    assert.equal((await creds.get()).accessKeyId, 'AK2');
  });

  test('a refusal is remembered with a growing delay; retryNow asks again; success clears it', async () => {
    const clock = manualClock();
    const sts = fakeFetch(clock);
    sts.fail = 'cannot assume role arn:aws:iam::1:role/r: AccessDenied: no';
    const warnings: string[] = [];
    const log = pino({ level: 'warn' }, { write: (line: string) => warnings.push(JSON.parse(line).msg as string) });
    const creds = new RefreshingCredentials({ fetch: () => sts.fetch(), name: 'role r', log, clock, retryMinMs: 5_000, retryMaxMs: 20_000 });
    await assert.rejects(creds.get(), (err: unknown) => err instanceof CredentialsError && err.code === 'AccessDenied');
    await assert.rejects(creds.get());
    assert.equal(sts.calls, 1, 'the second caller got the remembered error');
    assert.equal(creds.state().state, 'failed');
    clock.advance(5_000);
    await assert.rejects(creds.get());
    assert.equal(sts.calls, 2);
    clock.advance(5_000);
    await assert.rejects(creds.get());
    assert.equal(sts.calls, 2, 'the delay doubled to 10 s');
    await assert.rejects(creds.get({ retryNow: true }));
    assert.equal(sts.calls, 3);
    assert.equal(warnings.length, 1, 'the same failure is logged once');
    sts.fail = undefined;
    assert.equal((await creds.get({ retryNow: true })).accessKeyId, 'AK4');
    assert.equal(creds.state().state, 'ok');
  });

  test('a failed background renewal keeps the current credentials until they run out', async () => {
    const clock = manualClock();
    const sts = fakeFetch(clock);
    const creds = new RefreshingCredentials({ fetch: () => sts.fetch(), name: 'role r', log: silent, clock });
    await creds.get();
    sts.fail = 'cannot assume role: throttled';
    clock.advance(57 * MIN);
    assert.equal((await creds.get()).accessKeyId, 'AK1');
    await new Promise((r) => setImmediate(r));
    assert.equal((await creds.get()).accessKeyId, 'AK1');
    clock.advance(3 * MIN);
    await assert.rejects(creds.get(), /throttled/);
  });
});

function s3Config(env: Record<string, string> = {}) {
  return loadConfig({ env: { S3SFTP_S3_BUCKET: 'files', ...env } }).s3;
}

/** An assumer that records its calls and hands out credentials naming the role and the signer. */
function recordingAssumer() {
  const calls: { signer: string; params: AssumeRoleParams }[] = [];
  const assume = (base: CredentialsProvider, params: AssumeRoleParams): CredentialsProvider => async () => {
    const signer = (await base()).accessKeyId;
    calls.push({ signer, params });
    return { accessKeyId: `as:${params.roleArn.split('/')[1]}`, secretAccessKey: 's', expiration: new Date(Date.now() + 3_600_000) };
  };
  return { calls, assume };
}

describe('Identities', () => {
  const base: CredentialsProvider = async () => ({ accessKeyId: 'BASE', secretAccessKey: 'x' });

  test('without roles, the server and every user use the base credentials', async () => {
    const ids = new Identities({ config: s3Config(), log: silent, base });
    assert.equal((await ids.server()).accessKeyId, 'BASE');
    assert.equal(ids.forRole(undefined), ids.server);
    assert.equal(ids.forRole(''), ids.server);
  });

  test('the server role is assumed with the base credentials; user roles with the server role', async () => {
    const sts = recordingAssumer();
    const config = s3Config({
      S3SFTP_S3_CREDENTIALS_ROLEARN: 'arn:aws:iam::123456789012:role/server',
      S3SFTP_S3_CREDENTIALS_EXTERNALID: 'ext',
      S3SFTP_S3_CREDENTIALS_DURATION: '30m',
      S3SFTP_S3_REGION: 'eu-west-1',
    });
    const ids = new Identities({ config, log: silent, base, assumeRole: sts.assume });
    assert.equal((await ids.server()).accessKeyId, 'as:server');
    assert.equal((await ids.forRole('arn:aws:iam::123456789012:role/alice')()).accessKeyId, 'as:alice');
    assert.equal((await ids.forRole('arn:aws:iam::123456789012:role/alice')()).accessKeyId, 'as:alice');
    assert.deepEqual(
      sts.calls.map((c) => [c.signer, c.params.roleArn, c.params.externalId, c.params.durationSeconds, c.params.sessionName, c.params.region]),
      [
        ['BASE', 'arn:aws:iam::123456789012:role/server', 'ext', 1800, 's3sftp', 'eu-west-1'],
        ['as:server', 'arn:aws:iam::123456789012:role/alice', undefined, 1800, 's3sftp', 'eu-west-1'],
      ],
    );
    // A user whose role is the server's shares its cache entry.
    assert.equal(ids.role('arn:aws:iam::123456789012:role/server'), ids.role('arn:aws:iam::123456789012:role/server'));
    await ids.forRole('arn:aws:iam::123456789012:role/server')();
    assert.equal(sts.calls.length, 2);
  });
});

describe('ClientPool', () => {
  test('one client per (role, region, endpoint), each announced once; users fall back to the server settings', () => {
    const created: unknown[] = [];
    const sts = recordingAssumer();
    const config = s3Config({ S3SFTP_S3_ENDPOINT: 'http://127.0.0.1:9', S3SFTP_S3_CREDENTIALS_ACCESSKEYID: 'a', S3SFTP_S3_CREDENTIALS_SECRETACCESSKEY: 'b' });
    const pool = new ClientPool({
      config,
      log: silent,
      identities: new Identities({ config, log: silent, assumeRole: sts.assume }),
      onClient: (c) => created.push(c),
    });
    try {
      const u = (s3: Record<string, string>) => ({ username: 'u', s3: { bucket: 'files', keyPrefix: '', ...s3 } });
      const plain = pool.clientFor(u({}));
      assert.equal(plain, pool.default);
      assert.equal(pool.clientFor(u({ region: 'us-east-1', endpoint: 'http://127.0.0.1:9' })), plain, 'explicit server values are the same client');
      const alice = pool.clientFor(u({ roleArn: 'arn:aws:iam::123456789012:role/alice' }));
      assert.notEqual(alice, plain);
      assert.equal(pool.forSession(u({ roleArn: 'arn:aws:iam::123456789012:role/alice' }), silent), alice);
      const elsewhere = pool.clientFor(u({ roleArn: 'arn:aws:iam::123456789012:role/alice', region: 'eu-west-1' }));
      assert.notEqual(elsewhere, alice);
      assert.equal(created.length, 3);
      assert.equal(sts.calls.length <= 1, true, 'creating clients alone does not call STS (forSession may)');
    } finally {
      pool.destroy();
    }
    assert.throws(() => pool.default, /closed/);
  });
});

describe('errors', () => {
  test('a refused role is "permission denied" for the client; missing server credentials are a backend failure', () => {
    const role = new CredentialsError('cannot assume role arn:aws:iam::1:role/r: AccessDenied: no', { roleArn: 'arn:aws:iam::1:role/r', code: 'AccessDenied' });
    const mapped = toStorageError(role, 'stat /a');
    assert.ok(mapped instanceof PermissionDeniedError);
    assert.doesNotMatch(mapped.message, /arn:|AccessDenied/, 'no role ARN or STS text reaches the SFTP client');
    assert.equal(mapped.cause, role);
    assert.ok(toStorageError(new CredentialsError('no AWS credentials found', { code: 'CredentialsProviderError' }), 'stat /a') instanceof BackendError);
  });
});

describe('config keys', () => {
  const problems = (env: Record<string, string>): string => {
    try {
      loadConfig({ env: { S3SFTP_S3_BUCKET: 'files', ...env } });
    } catch (err) {
      assert.ok(err instanceof ConfigError);
      return err.message;
    }
    return '';
  };

  test('defaults: no role, session name s3sftp, one hour', () => {
    const { roleArn, externalId, sessionName, durationMs } = s3Config().credentials;
    assert.deepEqual({ roleArn, externalId, sessionName, durationMs }, { roleArn: '', externalId: '', sessionName: 's3sftp', durationMs: 3_600_000 });
  });

  test('role ARNs of AWS partitions and of S3-compatible stores are accepted; other strings are not', () => {
    for (const arn of ['arn:aws:iam::123456789012:role/s3sftp', 'arn:aws-cn:iam::123456789012:role/path/x', 'arn:minio:iam:::role/abc']) {
      assert.equal(problems({ S3SFTP_S3_CREDENTIALS_ROLEARN: arn }), '', arn);
    }
    assert.match(problems({ S3SFTP_S3_CREDENTIALS_ROLEARN: 's3sftp' }), /^s3\.credentials\.roleArn \(env S3SFTP_S3_CREDENTIALS_ROLEARN\): "s3sftp" is not an IAM role ARN/);
    assert.match(problems({ S3SFTP_S3_CREDENTIALS_ROLEARN: 'arn:aws:iam::123456789012:user/bob' }), /is not an IAM role ARN/);
  });

  test('duration must be 15m to 12h', () => {
    assert.equal(s3Config({ S3SFTP_S3_CREDENTIALS_DURATION: '15m' }).credentials.durationMs, 900_000);
    assert.equal(s3Config({ S3SFTP_S3_CREDENTIALS_DURATION: '12h' }).credentials.durationMs, 43_200_000);
    assert.match(problems({ S3SFTP_S3_CREDENTIALS_DURATION: '10m' }), /s3\.credentials\.duration .*"10m" is too short; STS issues credentials for at least 15m/);
    assert.match(problems({ S3SFTP_S3_CREDENTIALS_DURATION: '13h' }), /is too long; STS issues credentials for at most 12h/);
  });

  test('session name and external id follow STS rules; an external id needs a role', () => {
    assert.match(problems({ S3SFTP_S3_CREDENTIALS_SESSIONNAME: 'has space' }), /s3\.credentials\.sessionName .*is not a role session name/);
    assert.match(problems({ S3SFTP_S3_CREDENTIALS_EXTERNALID: 'x' }), /s3\.credentials\.externalId .*is not an external id/);
    assert.match(problems({ S3SFTP_S3_CREDENTIALS_EXTERNALID: 'abc-123' }), /^s3\.credentials\.externalId: is set without s3\.credentials\.roleArn/);
    assert.equal(problems({ S3SFTP_S3_CREDENTIALS_EXTERNALID: 'abc-123', S3SFTP_S3_CREDENTIALS_ROLEARN: 'arn:aws:iam::123456789012:role/x' }), '');
  });
});
