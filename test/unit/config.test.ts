import { test, describe, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ConfigError, describeConfigKeys, loadConfig } from '../../src/config/load.ts';
import { formatDuration, formatSize, parseDuration, parseSize } from '../../src/config/units.ts';
import { DEFAULT_CIPHERS, DEFAULT_HOST_KEY_ALGORITHMS, DEFAULT_KEX, DEFAULT_MACS } from '../../src/ssh/crypto-policy.ts';

let dir: string;
before(async () => {
  dir = await mkdtemp(join(tmpdir(), 's3sftp-config-'));
});
after(async () => {
  await rm(dir, { recursive: true, force: true });
});

let fileCount = 0;
async function yamlFile(text: string): Promise<string> {
  const file = join(dir, `config-${fileCount++}.yaml`);
  await writeFile(file, text);
  return file;
}

/** The ConfigError thrown by loadConfig, or a failed assertion. */
function configError(fn: () => unknown): ConfigError {
  try {
    fn();
  } catch (err) {
    assert.ok(err instanceof ConfigError, `expected ConfigError, got ${String(err)}`);
    return err;
  }
  assert.fail('expected loadConfig to throw');
}

const BUCKET = { S3SFTP_S3_BUCKET: 'files' };

describe('defaults', () => {
  test('only the bucket is needed; everything else has the documented default', () => {
    const c = loadConfig({ env: BUCKET });
    assert.deepEqual(c, {
      listen: { host: '0.0.0.0', port: 2022 },
      hostKeys: [],
      dataDir: '/var/lib/s3sftp',
      setstatMode: 2,
      renameMode: 0,
      renameMaxObjects: 10000,
      shutdownGracePeriodMs: 25_000,
      shutdownDelayMs: 0,
      proxyProtocol: { trustedCIDRs: [] },
      keepalive: { intervalMs: 60_000, countMax: 3 },
      s3: {
        bucket: 'files',
        region: 'us-east-1',
        endpoint: '',
        forcePathStyle: false,
        storageClass: '',
        acl: '',
        credentials: {
          accessKeyId: '',
          secretAccessKey: '',
          sessionToken: '',
          roleArn: '',
          externalId: '',
          sessionName: 's3sftp',
          durationMs: 3_600_000,
        },
        requestChecksum: 'when_required',
        upload: { partSize: 16 * 2 ** 20, concurrency: 4, partMaxTimeMs: 0 },
        download: { partSize: 8 * 2 ** 20, concurrency: 4, partMaxTimeMs: 0, readAheadFiles: 8 },
        abandonedUploadAgeMs: 24 * 3_600_000,
        maxRequestsPerSession: 16,
        maxRequestsPerUser: 32,
        sse: { mode: 'none', kmsKeyId: '', bucketKeyEnabled: false, customerKeyFile: '' },
      },
      sftp: { maxQueuedWriteBytes: 32 * 2 ** 20, uploadMemoryBudget: 2 ** 30 },
      users: { directory: '', kubernetes: { enabled: false, namespace: '', kubeconfig: '', leaseNamespace: '', leaseDurationMs: 15_000, leaseRenewIntervalMs: 5000 } },
      uploads: { resume: true, checksums: true, tempSuffixes: ['.filepart'], tempRenameWindowMs: 2000 },
      listing: { mtime: 'metadata', index: true },
      quota: { rescanIntervalMs: 600_000, scanConcurrency: 4 },
      bandwidth: { uploadKiBps: 0, downloadKiBps: 0 },
      metrics: { listen: { host: '0.0.0.0', port: 9090 }, perUserLabels: false, perUserLabelLimit: 100 },
      log: { level: 'info' },
      ssh: {
        loginGraceTimeMs: 30_000,
        maxUnauthenticated: 100,
        maxUnauthenticatedPerSource: 20,
        maxConnectionsPerUser: 0,
        maxConnectionsPerSource: 0,
        maxChannelsPerConnection: 10,
        algorithms: {
          kex: [...DEFAULT_KEX],
          hostKey: [...DEFAULT_HOST_KEY_ALGORITHMS],
          cipher: [...DEFAULT_CIPHERS],
          mac: [...DEFAULT_MACS],
        },
      },
      auth: { verifyConcurrency: 2, verifyQueue: 64 },
      defender: { enabled: true, threshold: 15, observationTimeMs: 600_000, banTimeMs: 900_000, trustedCIDRs: [] },
    });
  });

  test('hardening keys: CIDR lists are checked, algorithm lists must not be empty', () => {
    const c = loadConfig({ env: { ...BUCKET, S3SFTP_DEFENDER_TRUSTEDCIDRS: '10.0.0.0/8, 2001:db8::/32', S3SFTP_SSH_MACS: 'hmac-sha2-512' } });
    assert.deepEqual(c.defender.trustedCIDRs, ['10.0.0.0/8', '2001:db8::/32']);
    assert.deepEqual(c.ssh.algorithms.mac, ['hmac-sha2-512']);
    const err = configError(() => loadConfig({ env: { ...BUCKET, S3SFTP_DEFENDER_TRUSTEDCIDRS: '10.0.0.0/40' } }));
    assert.match(err.message, /defender\.trustedCIDRs .*not an address or CIDR/);
  });

  test('the result is deep-frozen', () => {
    const c = loadConfig({ env: BUCKET });
    assert.ok(Object.isFrozen(c));
    assert.ok(Object.isFrozen(c.s3.upload));
    assert.ok(Object.isFrozen(c.hostKeys));
    assert.throws(() => {
      (c.s3 as { bucket: string }).bucket = 'other';
    }, TypeError);
  });

  test('an empty file is the same as no file', async () => {
    assert.deepEqual(loadConfig({ file: await yamlFile(''), env: BUCKET }), loadConfig({ env: BUCKET }));
  });

  test('the example from the docs loads as written', async () => {
    const file = await yamlFile(`
listen: 0.0.0.0:2022
hostKeys: []
dataDir: /var/lib/s3sftp
setstatMode: 2
renameMode: 0
renameMaxObjects: 10000
shutdownGracePeriod: 25s
s3:
  bucket: my-bucket
  region: us-east-1
  endpoint: ""
  forcePathStyle: false
  storageClass: ""
  acl: ""
  credentials: { accessKeyId: "", secretAccessKey: "", sessionToken: "" }
  requestChecksum: when_required
  abandonedUploadAge: 24h
  upload: { partSize: 16MiB, concurrency: 4, partMaxTime: 0s }
  download: { partSize: 8MiB, concurrency: 4, partMaxTime: 0s }
users:
  directory: ""
metrics: { listen: 0.0.0.0:9090, perUserLabels: false }
log: { level: info }
`);
    const c = loadConfig({ file, env: {} });
    assert.equal(c.s3.bucket, 'my-bucket');
    assert.deepEqual(c, loadConfig({ env: { S3SFTP_S3_BUCKET: 'my-bucket' } }));
  });

  test('empty YAML values (key with nothing after the colon) mean "use the default"', async () => {
    const file = await yamlFile('s3:\n  bucket: b\n  region:\nlog:\n');
    const c = loadConfig({ file, env: {} });
    assert.equal(c.s3.region, 'us-east-1');
    assert.equal(c.log.level, 'info');
  });
});

describe('file and env', () => {
  test('file values are used, env overrides them key by key', async () => {
    const file = await yamlFile(`
listen: 127.0.0.1:2200
s3:
  bucket: from-file
  region: eu-west-1
  upload: { concurrency: 8 }
log: { level: debug }
`);
    const c = loadConfig({
      file,
      env: { S3SFTP_S3_BUCKET: 'from-env', S3SFTP_LOG_LEVEL: 'warn', S3SFTP_S3_UPLOAD_PARTSIZE: '32MiB' },
    });
    assert.equal(c.s3.bucket, 'from-env');
    assert.equal(c.log.level, 'warn');
    assert.equal(c.s3.region, 'eu-west-1');
    assert.equal(c.s3.upload.concurrency, 8);
    assert.equal(c.s3.upload.partSize, 32 * 2 ** 20);
    assert.deepEqual(c.listen, { host: '127.0.0.1', port: 2200 });
  });

  test('every key can be set from env, with typed values parsed from strings', () => {
    const c = loadConfig({
      env: {
        S3SFTP_LISTEN: '[::1]:2222',
        S3SFTP_HOSTKEYS: '/keys/a, /keys/b,',
        S3SFTP_DATADIR: '/data',
        S3SFTP_SETSTATMODE: '0',
        S3SFTP_RENAMEMODE: '1',
        S3SFTP_RENAMEMAXOBJECTS: '500',
        S3SFTP_S3_BUCKET: 'b',
        S3SFTP_S3_REGION: 'eu-central-1',
        S3SFTP_S3_ENDPOINT: 'http://minio:9000',
        S3SFTP_S3_FORCEPATHSTYLE: 'true',
        S3SFTP_S3_STORAGECLASS: 'STANDARD_IA',
        S3SFTP_S3_ACL: 'bucket-owner-full-control',
        S3SFTP_S3_CREDENTIALS_ACCESSKEYID: 'AKIA',
        S3SFTP_S3_CREDENTIALS_SECRETACCESSKEY: 'secret',
        S3SFTP_S3_CREDENTIALS_SESSIONTOKEN: 'token',
        S3SFTP_S3_CREDENTIALS_ROLEARN: 'arn:aws:iam::123456789012:role/s3sftp',
        S3SFTP_S3_CREDENTIALS_EXTERNALID: 'ext-1',
        S3SFTP_S3_CREDENTIALS_SESSIONNAME: 'sftp-prod',
        S3SFTP_S3_CREDENTIALS_DURATION: '2h',
        S3SFTP_S3_REQUESTCHECKSUM: 'when_supported',
        S3SFTP_S3_UPLOAD_PARTSIZE: '6MB',
        S3SFTP_S3_UPLOAD_CONCURRENCY: '16',
        S3SFTP_S3_UPLOAD_PARTMAXTIME: '2m',
        S3SFTP_S3_DOWNLOAD_PARTSIZE: '512KiB',
        S3SFTP_S3_DOWNLOAD_CONCURRENCY: '2',
        S3SFTP_S3_DOWNLOAD_PARTMAXTIME: '30',
        S3SFTP_S3_DOWNLOAD_READAHEADFILES: '0',
        S3SFTP_USERS_DIRECTORY: '/users',
        S3SFTP_LOG_LEVEL: 'debug',
      },
    });
    assert.deepEqual(c.listen, { host: '::1', port: 2222 });
    assert.deepEqual(c.hostKeys, ['/keys/a', '/keys/b']);
    assert.equal(c.dataDir, '/data');
    assert.equal(c.setstatMode, 0);
    assert.equal(c.renameMode, 1);
    assert.equal(c.renameMaxObjects, 500);
    assert.equal(c.s3.endpoint, 'http://minio:9000');
    assert.equal(c.s3.forcePathStyle, true);
    assert.equal(c.s3.storageClass, 'STANDARD_IA');
    assert.equal(c.s3.acl, 'bucket-owner-full-control');
    assert.deepEqual(c.s3.credentials, {
      accessKeyId: 'AKIA',
      secretAccessKey: 'secret',
      sessionToken: 'token',
      roleArn: 'arn:aws:iam::123456789012:role/s3sftp',
      externalId: 'ext-1',
      sessionName: 'sftp-prod',
      durationMs: 7_200_000,
    });
    assert.equal(c.s3.requestChecksum, 'when_supported');
    assert.deepEqual(c.s3.upload, { partSize: 6_000_000, concurrency: 16, partMaxTimeMs: 120_000 });
    assert.deepEqual(c.s3.download, { partSize: 512 * 1024, concurrency: 2, partMaxTimeMs: 30_000, readAheadFiles: 0 });
    assert.equal(c.users.directory, '/users');
    assert.equal(c.log.level, 'debug');
  });

  test('an empty env var does not override the file (templates render unset values as "")', async () => {
    const file = await yamlFile('s3: { bucket: b, region: eu-west-1 }');
    assert.equal(loadConfig({ file, env: { S3SFTP_S3_REGION: '' } }).s3.region, 'eu-west-1');
  });

  test('unrelated S3SFTP_* variables (Kubernetes service links) are ignored', () => {
    const c = loadConfig({
      env: { ...BUCKET, S3SFTP_PORT: 'tcp://10.0.0.1:22', S3SFTP_SERVICE_HOST: '10.0.0.1' },
    });
    assert.equal(c.listen.port, 2022);
  });

  test('describeConfigKeys lists every key with its env var, default and doc', () => {
    const keys = describeConfigKeys();
    const byKey = new Map(keys.map((k) => [k.key, k]));
    assert.equal(byKey.get('s3.upload.partSize')?.env, 'S3SFTP_S3_UPLOAD_PARTSIZE');
    assert.equal(byKey.get('s3.upload.partSize')?.default, '16MiB');
    assert.equal(byKey.get('s3.credentials.accessKeyId')?.env, 'S3SFTP_S3_CREDENTIALS_ACCESSKEYID');
    assert.equal(byKey.get('s3.bucket')?.required, true);
    assert.equal(byKey.get('s3.bucket')?.default, undefined);
    for (const k of keys) assert.ok(k.doc.length > 10, `${k.key} has a doc`);
    assert.equal(keys.length, 79);
  });
});

describe('sizes and durations', () => {
  test('sizes: bytes, binary and decimal units', () => {
    assert.deepEqual(parseSize(1024), { value: 1024 });
    assert.deepEqual(parseSize('1024'), { value: 1024 });
    assert.deepEqual(parseSize('16MiB'), { value: 16 * 2 ** 20 });
    assert.deepEqual(parseSize('5MB'), { value: 5_000_000 });
    assert.deepEqual(parseSize('512KiB'), { value: 512 * 1024 });
    assert.deepEqual(parseSize('1GiB'), { value: 2 ** 30 });
    assert.deepEqual(parseSize('1.5 gib'), { value: 1.5 * 2 ** 30 });
    assert.match((parseSize('16M') as { error: string }).error, /ambiguous.*16MiB.*16MB/);
    assert.match((parseSize('16XB') as { error: string }).error, /unknown unit/);
    assert.ok('error' in parseSize(-1));
    assert.ok('error' in parseSize('1.3B'));
  });

  test('durations: seconds, units and combinations', () => {
    assert.deepEqual(parseDuration(30), { value: 30_000 });
    assert.deepEqual(parseDuration('30'), { value: 30_000 });
    assert.deepEqual(parseDuration('30s'), { value: 30_000 });
    assert.deepEqual(parseDuration('5m'), { value: 300_000 });
    assert.deepEqual(parseDuration('1h'), { value: 3_600_000 });
    assert.deepEqual(parseDuration('250ms'), { value: 250 });
    assert.deepEqual(parseDuration('1m30s'), { value: 90_000 });
    assert.deepEqual(parseDuration('0s'), { value: 0 });
    assert.ok('error' in parseDuration('5 minutes'));
    assert.ok('error' in parseDuration('-1s'));
  });

  test('formatting picks the largest even unit', () => {
    assert.equal(formatSize(5 * 2 ** 20), '5MiB');
    assert.equal(formatSize(5_000_000), '5000000B');
    assert.equal(formatDuration(90_000), '90s');
    assert.equal(formatDuration(250), '250ms');
  });

  test('sizes and durations in the file', async () => {
    const file = await yamlFile(`
s3:
  bucket: b
  upload: { partSize: 64MiB, partMaxTime: 1m }
  download: { partSize: 1048576, partMaxTime: 250ms }
`);
    const c = loadConfig({ file, env: {} });
    assert.equal(c.s3.upload.partSize, 64 * 2 ** 20);
    assert.equal(c.s3.upload.partMaxTimeMs, 60_000);
    assert.equal(c.s3.download.partSize, 2 ** 20);
    assert.equal(c.s3.download.partMaxTimeMs, 250);
  });
});

describe('invalid values name the key and what is allowed', () => {
  const cases: [string, Record<string, string>, RegExp][] = [
    ['5MB is less than the 5MiB minimum', { S3SFTP_S3_UPLOAD_PARTSIZE: '5MB' }, /^s3\.upload\.partSize .*"5MB" is too small; use at least 5MiB/m],
    ['part size below the S3 minimum', { S3SFTP_S3_UPLOAD_PARTSIZE: '3MiB' }, /^s3\.upload\.partSize \(env S3SFTP_S3_UPLOAD_PARTSIZE\): "3MiB" is too small; use at least 5MiB \(S3's minimum part size\)$/m],
    ['part size above the S3 maximum', { S3SFTP_S3_UPLOAD_PARTSIZE: '6GiB' }, /^s3\.upload\.partSize .*too big; use at most 5GiB/m],
    ['download part size too small', { S3SFTP_S3_DOWNLOAD_PARTSIZE: '1KiB' }, /^s3\.download\.partSize .*at least 64KiB/m],
    ['size that is not a size', { S3SFTP_S3_UPLOAD_PARTSIZE: 'big' }, /^s3\.upload\.partSize .*"big" is not a size; use bytes/m],
    ['concurrency out of range', { S3SFTP_S3_UPLOAD_CONCURRENCY: '0' }, /^s3\.upload\.concurrency .*"0" is too small; use at least 1/m],
    ['concurrency too high', { S3SFTP_S3_DOWNLOAD_CONCURRENCY: '65' }, /^s3\.download\.concurrency .*at most 64/m],
    ['read-ahead negative', { S3SFTP_S3_DOWNLOAD_READAHEADFILES: '-1' }, /^s3\.download\.readAheadFiles .*at least 0/m],
    ['concurrency not a number', { S3SFTP_S3_UPLOAD_CONCURRENCY: 'four' }, /^s3\.upload\.concurrency .*not a whole number; use an integer from 1 to 64/m],
    ['bad duration', { S3SFTP_S3_UPLOAD_PARTMAXTIME: '5 minutes' }, /^s3\.upload\.partMaxTime .*not a duration; use seconds/m],
    ['setstatMode out of range', { S3SFTP_SETSTATMODE: '3' }, /^setstatMode .*"3" is not allowed; use 0 \(.*\), 1 \(.*\) or 2 \(.*\)/m],
    ['renameMode out of range', { S3SFTP_RENAMEMODE: '2' }, /^renameMode .*use 0 .* or 1/m],
    ['renameMaxObjects zero', { S3SFTP_RENAMEMAXOBJECTS: '0' }, /^renameMaxObjects .*at least 1/m],
    ['log level', { S3SFTP_LOG_LEVEL: 'verbose' }, /^log\.level .*"verbose" is not allowed; use trace, debug, info, warn, error, fatal or silent/m],
    ['acl', { S3SFTP_S3_ACL: 'public' }, /^s3\.acl .*use "" \(empty\), private, public-read/m],
    ['checksum mode', { S3SFTP_S3_REQUESTCHECKSUM: 'always' }, /^s3\.requestChecksum .*use when_required or when_supported/m],
    ['boolean', { S3SFTP_S3_FORCEPATHSTYLE: 'maybe' }, /^s3\.forcePathStyle .*not a boolean; use true or false/m],
    ['endpoint without scheme', { S3SFTP_S3_ENDPOINT: 'minio:9000' }, /^s3\.endpoint .*must start with http:\/\/ or https:\/\//m],
    ['endpoint garbage', { S3SFTP_S3_ENDPOINT: 'not a url' }, /^s3\.endpoint .*is not a URL/m],
    ['storage class', { S3SFTP_S3_STORAGECLASS: 'standard' }, /^s3\.storageClass .*upper case/m],
    ['listen without port', { S3SFTP_LISTEN: '0.0.0.0' }, /^listen .*has no port; use host:port/m],
    ['listen port too big', { S3SFTP_LISTEN: '0.0.0.0:70000' }, /^listen .*port from 0 to 65535/m],
    ['listen IPv6 without brackets', { S3SFTP_LISTEN: '::1:2022' }, /^listen .*write it as \[::1\]:2022/m],
    ['listen without host', { S3SFTP_LISTEN: ':2022' }, /^listen .*use 0\.0\.0\.0:2022/m],
    ['bucket as a URL', { S3SFTP_S3_BUCKET: 's3://files' }, /^s3\.bucket .*is a URL; write only the bucket name/m],
    ['bucket with a path', { S3SFTP_S3_BUCKET: 'files/users' }, /^s3\.bucket .*keyPrefix/m],
    ['only one credential', { S3SFTP_S3_CREDENTIALS_ACCESSKEYID: 'AKIA' }, /^s3\.credentials: set both accessKeyId and secretAccessKey, or neither/m],
    ['session token alone', { S3SFTP_S3_CREDENTIALS_SESSIONTOKEN: 'tok' }, /^s3\.credentials\.sessionToken: is set without/m],
  ];
  for (const [name, env, expected] of cases) {
    test(name, () => {
      const err = configError(() => loadConfig({ env: { ...BUCKET, ...env } }));
      assert.equal(err.problems.length, 1, err.message);
      assert.match(err.message, expected);
    });
  }

  test('the file reports the plain key path, with the value as written', async () => {
    const file = await yamlFile('s3:\n  bucket: b\n  upload:\n    partSize: 3MiB\n');
    const err = configError(() => loadConfig({ file, env: {} }));
    assert.equal(err.message, `s3.upload.partSize: "3MiB" is too small; use at least 5MiB (S3's minimum part size)`);
    assert.deepEqual(err.problems, [
      { key: 's3.upload.partSize', message: `"3MiB" is too small; use at least 5MiB (S3's minimum part size)` },
    ]);
  });

  test('wrong types in the file name the key', async () => {
    const file = await yamlFile('listen: 2022\nhostKeys: [1]\ns3: { bucket: b, region: [] }\nusers: yes\n');
    const err = configError(() => loadConfig({ file, env: {} }));
    assert.match(err.message, /^listen: 2022 is only a port; use host:port/m);
    assert.match(err.message, /^hostKeys: \[1\] has an invalid entry at index 0/m);
    assert.match(err.message, /^s3\.region: \[\] must be a string/m);
    assert.match(err.message, /^users: must be a mapping with the keys directory/m);
  });

  test('every problem is reported at once', async () => {
    const file = await yamlFile('setstatMode: 9\ns3:\n  upload: { partSize: 1KiB, concurrency: 100 }\n');
    const err = configError(() => loadConfig({ file, env: { S3SFTP_LOG_LEVEL: 'loud' } }));
    assert.deepEqual(
      err.problems.map((p) => p.key).sort(),
      ['log.level', 's3.bucket', 's3.upload.concurrency', 's3.upload.partSize', 'setstatMode'],
    );
  });

  test('secrets are never echoed in messages', () => {
    const err = configError(() =>
      loadConfig({ env: { ...BUCKET, S3SFTP_S3_CREDENTIALS_SECRETACCESSKEY: 'hunter2-very-secret' } }),
    );
    assert.doesNotMatch(err.message, /hunter2/);
  });
});

describe('unknown keys and missing bucket', () => {
  test('a misspelt key is an error that suggests the right one', async () => {
    const file = await yamlFile('lsten: 0.0.0.0:22\ns3:\n  bucket: b\n  upload: { partsize: 8MiB }\n');
    const err = configError(() => loadConfig({ file, env: {} }));
    assert.match(err.message, /^lsten: is not a known key; did you mean listen\?$/m);
    assert.match(err.message, /^s3\.upload\.partsize: is not a known key; did you mean s3\.upload\.partSize\?$/m);
  });

  test('a key at the wrong level suggests where it belongs', async () => {
    const file = await yamlFile('bucket: b\n');
    const err = configError(() => loadConfig({ file, env: {} }));
    assert.match(err.message, /^bucket: is not a known key; did you mean s3\.bucket\?$/m);
  });

  test('an unknown key with no close match lists the known keys at its level', async () => {
    const file = await yamlFile('s3: { bucket: b, zzz: 1 }\n');
    const err = configError(() => loadConfig({ file, env: {} }));
    assert.match(err.message, /^s3\.zzz: is not a known key; known keys in s3: bucket, region, endpoint/m);
  });

  test('missing bucket says where to set it', () => {
    const err = configError(() => loadConfig({ env: {} }));
    assert.equal(err.message, 's3.bucket: is required; set it in the config file or S3SFTP_S3_BUCKET');
  });

  test('an empty bucket in the file counts as missing', async () => {
    const file = await yamlFile('s3: { bucket: "" }\n');
    const err = configError(() => loadConfig({ file, env: {} }));
    assert.equal(err.message, 's3.bucket: is required; set it in the config file or S3SFTP_S3_BUCKET');
  });

  test('a missing or malformed file is a ConfigError naming the file', async () => {
    const missing = join(dir, 'nope.yaml');
    assert.match(configError(() => loadConfig({ file: missing, env: BUCKET })).message, /config file .*nope\.yaml does not exist/);
    const bad = await yamlFile('s3: { bucket: b\n');
    assert.match(configError(() => loadConfig({ file: bad, env: {} })).message, /config file .* is not valid YAML/);
    const list = await yamlFile('- a\n- b\n');
    assert.match(configError(() => loadConfig({ file: list, env: BUCKET })).message, /must be a YAML mapping/);
    const dup = await yamlFile('listen: a:1\nlisten: b:2\ns3: { bucket: b }\n');
    assert.match(configError(() => loadConfig({ file: dup, env: {} })).message, /not valid YAML.*[Uu]nique/);
  });
});

describe('drain, janitor and metrics keys', () => {
  test('defaults', () => {
    const c = loadConfig({ env: BUCKET });
    assert.equal(c.shutdownGracePeriodMs, 25_000);
    assert.equal(c.s3.abandonedUploadAgeMs, 24 * 3_600_000);
    assert.deepEqual(c.metrics, { listen: { host: '0.0.0.0', port: 9090 }, perUserLabels: false, perUserLabelLimit: 100 });
  });

  test('set from env', () => {
    const c = loadConfig({
      env: {
        ...BUCKET,
        S3SFTP_SHUTDOWNGRACEPERIOD: '1m30s',
        S3SFTP_S3_ABANDONEDUPLOADAGE: '0s',
        S3SFTP_METRICS_LISTEN: '127.0.0.1:0',
        S3SFTP_METRICS_PERUSERLABELS: 'true',
      },
    });
    assert.equal(c.shutdownGracePeriodMs, 90_000);
    assert.equal(c.s3.abandonedUploadAgeMs, 0);
    assert.deepEqual(c.metrics, { listen: { host: '127.0.0.1', port: 0 }, perUserLabels: true, perUserLabelLimit: 100 });
  });

  test('an abandoned-upload age short enough to abort live uploads is refused', () => {
    const err = configError(() => loadConfig({ env: { ...BUCKET, S3SFTP_S3_ABANDONEDUPLOADAGE: '10m' } }));
    assert.match(err.message, /^s3\.abandonedUploadAge \(env S3SFTP_S3_ABANDONEDUPLOADAGE\): "10m" is too small; use at least 1h/);
  });

  test('a metrics address without a port is refused', () => {
    assert.match(configError(() => loadConfig({ env: { ...BUCKET, S3SFTP_METRICS_LISTEN: '9090' } })).message, /^metrics\.listen .*has no port/);
  });
});

describe('users.kubernetes', () => {
  test('off by default; every key from env; POD_NAMESPACE fills leaseNamespace', () => {
    assert.deepEqual(loadConfig({ env: BUCKET }).users.kubernetes, { enabled: false, namespace: '', kubeconfig: '', leaseNamespace: '', leaseDurationMs: 15_000, leaseRenewIntervalMs: 5000 });
    const c = loadConfig({
      env: {
        ...BUCKET,
        S3SFTP_USERS_KUBERNETES_ENABLED: 'true',
        S3SFTP_USERS_KUBERNETES_NAMESPACE: 'sftp',
        S3SFTP_USERS_KUBERNETES_KUBECONFIG: '/etc/kube/config',
        POD_NAMESPACE: 'ops',
      },
    });
    assert.deepEqual(c.users.kubernetes, { enabled: true, namespace: 'sftp', kubeconfig: '/etc/kube/config', leaseNamespace: 'ops', leaseDurationMs: 15_000, leaseRenewIntervalMs: 5000 });
    const explicit = loadConfig({ env: { ...BUCKET, S3SFTP_USERS_KUBERNETES_LEASENAMESPACE: 'leases', POD_NAMESPACE: 'ops' } });
    assert.equal(explicit.users.kubernetes.leaseNamespace, 'leases', 'the key wins over POD_NAMESPACE');
  });

  test('a namespace that is not a Kubernetes name is refused', () => {
    const err = configError(() => loadConfig({ env: { ...BUCKET, S3SFTP_USERS_KUBERNETES_NAMESPACE: 'My_NS' } }));
    assert.match(err.message, /^users\.kubernetes\.namespace \(env S3SFTP_USERS_KUBERNETES_NAMESPACE\): "My_NS" is not a namespace name/m);
  });
});

describe('replicas: lease timings, PROXY protocol, keepalives', () => {
  test('lease timings: the renew interval must leave room for missed renewals', () => {
    const c = loadConfig({ env: { ...BUCKET, S3SFTP_USERS_KUBERNETES_LEASEDURATION: '3s', S3SFTP_USERS_KUBERNETES_LEASERENEWINTERVAL: '500ms' } });
    assert.equal(c.users.kubernetes.leaseDurationMs, 3000);
    assert.equal(c.users.kubernetes.leaseRenewIntervalMs, 500);
    const err = configError(() => loadConfig({ env: { ...BUCKET, S3SFTP_USERS_KUBERNETES_LEASEDURATION: '6s', S3SFTP_USERS_KUBERNETES_LEASERENEWINTERVAL: '5s' } }));
    assert.match(err.message, /^users\.kubernetes\.leaseRenewInterval: is more than a third of users\.kubernetes\.leaseDuration.*at most 2000ms/m);
    assert.match(configError(() => loadConfig({ env: { ...BUCKET, S3SFTP_USERS_KUBERNETES_LEASEDURATION: '1s' } })).message, /leaseDuration.*too short; use at least 2s/);
  });

  test('proxyProtocol.trustedCIDRs takes CIDR blocks and single addresses, and names a bad entry', () => {
    const c = loadConfig({ env: { ...BUCKET, S3SFTP_PROXYPROTOCOL_TRUSTEDCIDRS: '10.0.0.0/8, fd00::/8,192.168.1.7' } });
    assert.deepEqual(c.proxyProtocol.trustedCIDRs, ['10.0.0.0/8', 'fd00::/8', '192.168.1.7']);
    for (const bad of ['10.0.0.0/33', 'nat-gateway', '10.0.0/8', 'fd00::/129']) {
      const err = configError(() => loadConfig({ env: { ...BUCKET, S3SFTP_PROXYPROTOCOL_TRUSTEDCIDRS: bad } }));
      assert.match(err.message, /proxyProtocol\.trustedCIDRs.*is not an address or CIDR; use e\.g\. 10\.0\.0\.0\/8/, bad);
    }
  });

  test('keepalive: interval 0s is allowed (off); countMax at least 1', () => {
    assert.deepEqual(loadConfig({ env: { ...BUCKET, S3SFTP_KEEPALIVE_INTERVAL: '0s' } }).keepalive, { intervalMs: 0, countMax: 3 });
    assert.match(configError(() => loadConfig({ env: { ...BUCKET, S3SFTP_KEEPALIVE_COUNTMAX: '0' } })).message, /keepalive\.countMax.*too small; use at least 1/);
  });
});
