import { test, describe, beforeEach, afterEach } from 'node:test';
import assert from 'node:assert/strict';
import { mkdir, mkdtemp, rename, rm, symlink, unlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { DirectorySource, DirectorySourceError, type DirectorySourceOptions } from '../../src/users/directory-source.ts';
import { generateEd25519 } from '../../src/ssh/keygen.ts';

const KEY = generateEd25519().public;

interface LogLine {
  level: 'info' | 'warn' | 'error';
  obj: Record<string, unknown>;
  msg: string;
}

function captureLog(): DirectorySourceOptions['log'] & { lines: LogLine[] } {
  const lines: LogLine[] = [];
  const at = (level: LogLine['level']) => (obj: object, msg: string) => {
    lines.push({ level, obj: obj as Record<string, unknown>, msg });
  };
  return { lines, info: at('info'), warn: at('warn'), error: at('error') };
}

function userYaml(name: string, extra: { keyPrefix?: string; permissions?: string; more?: string } = {}): string {
  return `apiVersion: s3sftp.io/v1alpha1
kind: SftpUser
metadata: { name: ${name} }
spec:
  publicKeys: ["${KEY}"]
  s3: { keyPrefix: "${extra.keyPrefix ?? `users/${name}/`}" }
  permissions: ${extra.permissions ?? '["*"]'}
${extra.more ?? ''}`;
}

/** Writes like careful tools do (temp file + rename), so no scan can see a half-written file. */
async function replaceFile(path: string, text: string): Promise<void> {
  await writeFile(`${path}.tmp`, text);
  await rename(`${path}.tmp`, path);
}

/** Polls until `check` passes or the deadline is reached, then asserts one last time. */
async function eventually(check: () => void, timeoutMs = 3000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    try {
      check();
      return;
    } catch (err) {
      if (Date.now() > deadline) throw err;
      await new Promise((r) => setTimeout(r, 10));
    }
  }
}

let dir: string;
const open: DirectorySource[] = [];

async function openSource(extra: Partial<DirectorySourceOptions> = {}) {
  const log = captureLog();
  const source = await DirectorySource.open({
    directory: dir,
    defaultBucket: 'default-bucket',
    log,
    debounceMs: 10,
    rescanIntervalMs: 50,
    ...extra,
  });
  open.push(source);
  const changes: string[] = [];
  source.onChange((u) => changes.push(u));
  return { source, log, changes };
}

beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), 's3sftp-users-'));
});
afterEach(async () => {
  await Promise.all(open.splice(0).map((s) => s.close()));
  await rm(dir, { recursive: true, force: true });
});

describe('loading', () => {
  test('a multi-document file with one malformed document: the valid ones load, the log names the file and field', async () => {
    await writeFile(
      join(dir, 'team.yaml'),
      [userYaml('alice'), userYaml('bob', { keyPrefix: '../escape' }), userYaml('carol')].join('---\n'),
    );
    const { source, log } = await openSource();
    assert.equal(source.ready, true);
    assert.deepEqual(source.all().map((u) => u.username).sort(), ['alice', 'carol']);
    assert.equal(source.get('alice')?.s3.bucket, 'default-bucket');
    assert.equal(source.get('bob'), undefined);

    const skipped = log.lines.filter((l) => l.level === 'warn');
    assert.equal(skipped.length, 1);
    const line = skipped[0]!;
    assert.match(line.msg, /SftpUser bob in team\.yaml \(document 2\)/);
    assert.match(line.msg, /spec\.s3\.keyPrefix/);
    assert.equal(line.obj.file, join(dir, 'team.yaml'));
    assert.equal(line.obj.document, 2);
    assert.equal(line.obj.resource, 'bob');
  });

  test('bad YAML, wrong kind and unrelated files are skipped; other files still load', async () => {
    await writeFile(join(dir, 'a-broken.yaml'), 'spec: [unclosed\n');
    await writeFile(join(dir, 'b-other.yml'), 'apiVersion: v1\nkind: ConfigMap\nmetadata: { name: x }\n');
    await writeFile(join(dir, 'c-good.yml'), userYaml('dave'));
    await writeFile(join(dir, 'notes.txt'), userYaml('eve'));
    await writeFile(join(dir, '.hidden.yaml'), userYaml('frank'));
    await mkdir(join(dir, 'sub.yaml'));
    const { source, log } = await openSource();
    assert.deepEqual(source.all().map((u) => u.username), ['dave']);
    const warnings = log.lines.filter((l) => l.level === 'warn').map((l) => l.msg);
    assert.equal(warnings.length, 2, warnings.join('\n'));
    assert.match(warnings[0]!, /a-broken\.yaml: not valid YAML/);
    assert.match(warnings[1]!, /b-other\.yml .*kind: "ConfigMap" is not supported; use SftpUser/);
  });

  test('duplicate usernames: the first by file name and document order wins, the duplicate is logged', async () => {
    await writeFile(join(dir, 'b.yaml'), userYaml('alice', { keyPrefix: 'from-b/' }));
    await writeFile(join(dir, 'a.yaml'), `${userYaml('zed')}---\n${userYaml('alice', { keyPrefix: 'from-a/' })}`);
    const { source, log } = await openSource();
    assert.equal(source.get('alice')?.s3.keyPrefix, 'from-a/');
    assert.match(source.get('alice')!.source, /a\.yaml \(document 2\)/);
    const dup = log.lines.find((l) => /ignored user alice/.test(l.msg));
    assert.ok(dup, 'the duplicate is logged');
    assert.match(dup.msg, /b\.yaml \(document 1\): a\.yaml \(document 2\) already defines it/);
  });

  test('a user that cannot log in is loaded and logged', async () => {
    await writeFile(
      join(dir, 'x.yaml'),
      'apiVersion: s3sftp.io/v1alpha1\nkind: SftpUser\nmetadata: { name: nokeys }\nspec: { s3: { keyPrefix: "" }, permissions: [list] }\n',
    );
    const { source, log } = await openSource();
    assert.ok(source.get('nokeys'));
    assert.ok(log.lines.some((l) => l.level === 'warn' && /nokeys .*cannot log in/.test(l.msg)));
  });

  test('a missing directory fails open() with a typed error', async () => {
    await assert.rejects(
      DirectorySource.open({ directory: join(dir, 'nope'), defaultBucket: 'b', log: captureLog() }),
      (err: unknown) => err instanceof DirectorySourceError && /users\.directory .*nope does not exist/.test(err.message),
    );
  });

  test('problems are logged once, not on every re-scan', async () => {
    await writeFile(join(dir, 'bad.yaml'), userYaml('bad', { permissions: '[fly]' }));
    const { log } = await openSource({ rescanIntervalMs: 20 });
    await new Promise((r) => setTimeout(r, 150));
    assert.equal(log.lines.filter((l) => /SftpUser bad/.test(l.msg)).length, 1);
  });
});

describe('watching', () => {
  test('editing a file fires onChange and updates the user', async () => {
    const file = join(dir, 'alice.yaml');
    await writeFile(file, userYaml('alice', { permissions: '[list]' }));
    const { source, changes } = await openSource();
    assert.deepEqual([...source.get('alice')!.permissions], ['list']);

    await replaceFile(file, userYaml('alice', { permissions: '[list, download]' }));
    await eventually(() => assert.deepEqual(changes, ['alice']));
    assert.deepEqual([...source.get('alice')!.permissions].sort(), ['download', 'list']);
  });

  test('adding and deleting files add and remove users', async () => {
    await writeFile(join(dir, 'alice.yaml'), userYaml('alice'));
    const { source, changes } = await openSource();

    await writeFile(join(dir, 'bob.yaml'), userYaml('bob'));
    await eventually(() => assert.ok(source.get('bob')));
    assert.deepEqual(changes, ['bob']);

    await unlink(join(dir, 'alice.yaml'));
    await eventually(() => assert.equal(source.get('alice'), undefined));
    assert.deepEqual(changes, ['bob', 'alice']);
    assert.deepEqual(source.all().map((u) => u.username), ['bob']);
  });

  test('a user that becomes invalid is removed, and comes back when fixed', async () => {
    const file = join(dir, 'alice.yaml');
    await writeFile(file, userYaml('alice'));
    const { source, changes, log } = await openSource();
    await replaceFile(file, userYaml('alice', { keyPrefix: '/etc' }));
    await eventually(() => assert.equal(source.get('alice'), undefined));
    assert.ok(log.lines.some((l) => /spec\.s3\.keyPrefix/.test(l.msg)));
    await replaceFile(file, userYaml('alice'));
    await eventually(() => assert.ok(source.get('alice')));
    assert.deepEqual(changes, ['alice', 'alice']);
  });

  test('rewriting a file without changing it fires nothing', async () => {
    const file = join(dir, 'alice.yaml');
    await writeFile(file, userYaml('alice'));
    const { changes, log } = await openSource();
    await replaceFile(file, `# a comment\n${userYaml('alice')}`);
    await new Promise((r) => setTimeout(r, 200));
    assert.deepEqual(changes, []);
    assert.equal(log.lines.filter((l) => l.level !== 'info').length, 0);
  });

  test('a Kubernetes ConfigMap-style ..data symlink swap is picked up', async () => {
    // The kubelet writes a new timestamped directory, then renames a new
    // ..data symlink over the old one; the visible files are symlinks into ..data.
    await mkdir(join(dir, '..v1'));
    await writeFile(join(dir, '..v1', 'alice.yaml'), userYaml('alice', { keyPrefix: 'v1/' }));
    await symlink('..v1', join(dir, '..data'));
    await symlink('..data/alice.yaml', join(dir, 'alice.yaml'));
    const { source, changes } = await openSource();
    assert.equal(source.get('alice')?.s3.keyPrefix, 'v1/');

    await mkdir(join(dir, '..v2'));
    await writeFile(join(dir, '..v2', 'alice.yaml'), userYaml('alice', { keyPrefix: 'v2/' }));
    await symlink('..v2', join(dir, '..data_tmp'));
    await rename(join(dir, '..data_tmp'), join(dir, '..data'));
    await eventually(() => assert.equal(source.get('alice')?.s3.keyPrefix, 'v2/'));
    assert.deepEqual(changes, ['alice']);
  });

  test('fs.watch alone picks up a change (no re-scan within the test)', async () => {
    await writeFile(join(dir, 'alice.yaml'), userYaml('alice'));
    const { source } = await openSource({ rescanIntervalMs: 60_000 });
    await replaceFile(join(dir, 'bob.yaml'), userYaml('bob'));
    await eventually(() => assert.ok(source.get('bob')));
  });

  test('the periodic re-scan alone picks up a change (watch events never settle)', async () => {
    await writeFile(join(dir, 'alice.yaml'), userYaml('alice'));
    const { source, changes } = await openSource({ debounceMs: 60_000, rescanIntervalMs: 30 });
    await replaceFile(join(dir, 'bob.yaml'), userYaml('bob'));
    await eventually(() => assert.ok(source.get('bob')));
    assert.deepEqual(changes, ['bob']);
  });

  test('a listener that throws is logged and does not stop the others', async () => {
    await writeFile(join(dir, 'alice.yaml'), userYaml('alice'));
    const { source, changes, log } = await openSource();
    source.onChange(() => {
      throw new Error('boom');
    });
    const later: string[] = [];
    source.onChange((u) => later.push(u));
    await writeFile(join(dir, 'bob.yaml'), userYaml('bob'));
    await eventually(() => assert.deepEqual(later, ['bob']));
    assert.deepEqual(changes, ['bob']);
    assert.ok(log.lines.some((l) => l.level === 'error' && /listener threw/.test(l.msg)));
  });

  test('unsubscribing and close() stop notifications', async () => {
    await writeFile(join(dir, 'alice.yaml'), userYaml('alice'));
    const { source, changes } = await openSource();
    const seen: string[] = [];
    const off = source.onChange((u) => seen.push(u));
    off();
    await source.close();
    await writeFile(join(dir, 'bob.yaml'), userYaml('bob'));
    await new Promise((r) => setTimeout(r, 150));
    assert.deepEqual(changes, []);
    assert.deepEqual(seen, []);
    assert.equal(source.get('bob'), undefined);
  });
});
