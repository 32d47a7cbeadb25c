/**
 * One validator for SftpUsers: every example under examples/ and a set of broken resources go
 * through the directory source (a YAML file in users.directory) and through the Kubernetes path
 * (the controller's user table), and both accept and refuse the same resources with the same
 * message. The one deliberate difference: spec.passwordSecretRef needs the Kubernetes API.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseAllDocuments, stringify } from 'yaml';
import { DirectorySource } from '../../src/users/directory-source.ts';
import { computeUserTable, type NamespaceSecrets } from '../../src/kube/user-table.ts';
import type { SecretResource, SftpUserResource } from '../../src/kube/sftp-user-resource.ts';
import { crdSchemaProblems } from '../../src/users/crd-schema.ts';
import { generateEd25519 } from '../../src/ssh/keygen.ts';

const EXAMPLES = new URL('../../examples/', import.meta.url);
const KEY = generateEd25519().public;
const NS = 'team';

type Doc = Record<string, unknown>;

function user(name: string, spec: Doc, metadata: Doc = {}): Doc {
  return {
    apiVersion: 's3sftp.io/v1alpha1',
    kind: 'SftpUser',
    metadata: { name, ...metadata },
    spec: { publicKeys: [KEY], s3: { keyPrefix: `users/${name}/` }, permissions: ['list', 'download'], ...spec },
  };
}

/** [label, resource, the field the refusal must name]. */
const BROKEN: [string, Doc, string][] = [
  ['an unknown permission', user('b1', { permissions: ['admin'] }), 'spec.permissions[0]'],
  ['an absolute keyPrefix', user('b2', { s3: { keyPrefix: '/abs' } }), 'spec.s3.keyPrefix'],
  ['a misspelt field', user('b3', { s3: { keyPrefix: 'a/', path: 'x' } }), 'spec.s3.path'],
  ['a keyPrefix longer than the CRD allows', user('b4', { s3: { keyPrefix: `${'x'.repeat(511)}/` } }), 'spec.s3.keyPrefix'],
  ['no permissions', { ...user('b5', {}), spec: { publicKeys: [KEY], s3: { keyPrefix: 'a/' } } }, 'spec.permissions'],
  ['a role ARN with a short account', user('b6', { s3: { keyPrefix: 'a/', roleArn: 'arn:aws:iam::12345:role/x' } }), 'spec.s3.roleArn'],
  ['a lower-case storage class', user('b7', { s3: { keyPrefix: 'a/', storageClass: 'standard' } }), 'spec.s3.storageClass'],
  ['an endpoint without a scheme', user('b8', { s3: { keyPrefix: 'a/', endpoint: 'minio:9000' } }), 'spec.s3.endpoint'],
  ['disabled as a string', user('b9', { disabled: 'yes' }), 'spec.disabled'],
  ['a password hash and a Secret', user('b10', { passwordHash: '$2b$12$Lo5S8gBOMiK8V4iyLX/UTOm1fb4Fu17RUmlkXUIDR7flo3skLY/sO', passwordSecretRef: { name: 's' } }), 'spec.passwordSecretRef'],
  ['an upper-case username', user('b11', { username: 'Bob' }), 'spec.username'],
  ['a bucket URL', user('b12', { s3: { keyPrefix: 'a/', bucket: 's3://files' } }), 'spec.s3.bucket'],
];

interface Outcome {
  loaded: boolean;
  error?: string;
}

let dir: string;
let examples: { file: string; users: Doc[]; secrets: SecretResource[] }[];

before(async () => {
  dir = await mkdtemp(join(tmpdir(), 's3sftp-paths-'));
  examples = [];
  for (const file of (await readdir(EXAMPLES)).filter((f) => f.endsWith('.yaml')).sort()) {
    const docs = parseAllDocuments(await readFile(new URL(file, EXAMPLES), 'utf8')).map((d) => d.toJS() as Doc | null).filter((d): d is Doc => d !== null);
    examples.push({
      file,
      users: docs.filter((d) => d.kind === 'SftpUser'),
      secrets: docs.filter((d) => d.kind === 'Secret').map(toSecret),
    });
  }
});
after(() => rm(dir, { recursive: true, force: true }));

/** A Secret as the API serves it: stringData becomes base64 data. */
function toSecret(doc: Doc): SecretResource {
  const meta = doc.metadata as { name: string };
  const stringData = (doc.stringData ?? {}) as Record<string, string>;
  return {
    metadata: { name: meta.name, namespace: NS },
    data: Object.fromEntries(Object.entries(stringData).map(([k, v]) => [k, Buffer.from(v).toString('base64')])),
  };
}

async function throughDirectory(doc: Doc, name: string): Promise<Outcome> {
  const sub = await mkdtemp(join(dir, 'case-'));
  await writeFile(join(sub, `${name}.yaml`), stringify(doc));
  const warnings: Record<string, unknown>[] = [];
  const log = { info: () => {}, warn: (obj: object) => warnings.push(obj as Record<string, unknown>), error: () => {} };
  const source = await DirectorySource.open({ directory: sub, defaultBucket: 'files', log, debounceMs: 10, rescanIntervalMs: 60_000 });
  try {
    const loaded = source.all().length === 1;
    const error = warnings.map((w) => w.error).find((e): e is string => typeof e === 'string');
    return { loaded, error };
  } finally {
    await source.close();
  }
}

function throughKubernetes(doc: Doc, secrets: SecretResource[] = []): Outcome {
  const resource = {
    ...doc,
    metadata: { ...(doc.metadata as Doc), namespace: NS, uid: 'uid-1', generation: 1, creationTimestamp: '2026-01-01T00:00:00Z' },
  } as unknown as SftpUserResource;
  const listed: NamespaceSecrets = { listed: true, get: (name) => secrets.find((s) => s.metadata.name === name) };
  const table = computeUserTable({ resources: [resource], secrets: new Map([[NS, listed]]), defaultBucket: 'files' });
  const ready = [...table.verdicts.values()][0]?.ready;
  return { loaded: table.users.size === 1, error: ready?.reason === 'InvalidSpec' ? ready.message : undefined };
}

test('every example is accepted by the CRD schema, the directory and the Kubernetes path', async () => {
  assert.ok(examples.length >= 4);
  for (const { file, users, secrets } of examples) {
    assert.ok(users.length > 0, `${file} has an SftpUser`);
    for (const doc of users) {
      const label = `${file} ${(doc.metadata as { name: string }).name}`;
      assert.deepEqual(crdSchemaProblems(doc), [], label);
      assert.deepEqual(throughKubernetes(doc, secrets), { loaded: true, error: undefined }, label);
      const viaDir = await throughDirectory(doc, 'example');
      const spec = doc.spec as Doc;
      if (spec.passwordSecretRef) {
        // The deliberate difference: a directory has no Secrets to read.
        assert.equal(viaDir.loaded, false, label);
      } else {
        assert.deepEqual(viaDir, { loaded: true, error: undefined }, label);
      }
    }
  }
});

test('broken resources are refused by both paths with the same message, naming the field', async () => {
  const differences: string[] = [];
  for (const [label, doc, field] of BROKEN) {
    const viaDir = await throughDirectory(doc, 'broken');
    const viaKube = throughKubernetes(doc);
    if (viaDir.loaded || viaKube.loaded) differences.push(`${label}: loaded (directory ${viaDir.loaded}, kubernetes ${viaKube.loaded})`);
    else if (viaDir.error !== viaKube.error) differences.push(`${label}: directory says ${viaDir.error}; kubernetes says ${viaKube.error}`);
    else if (!viaDir.error?.includes(`${field}`)) differences.push(`${label}: the message does not name ${field}: ${viaDir.error}`);
  }
  assert.deepEqual(differences, []);
});

test('what the CRD refuses, both paths refuse, even where the server\'s own checks would not', async () => {
  const doc = BROKEN.find(([label]) => label.startsWith('a keyPrefix longer'))?.[1] as Doc;
  assert.deepEqual(crdSchemaProblems(doc), ['spec.s3.keyPrefix: is longer than 511 characters']);
  assert.equal((await throughDirectory(doc, 'long')).error, 'spec.s3.keyPrefix: is longer than 511 characters');
  assert.equal(throughKubernetes(doc).error, 'spec.s3.keyPrefix: is longer than 511 characters');
});

test('schema messages never echo a value (it may be a password)', () => {
  const problems = crdSchemaProblems(user('p', { passwordHash: 'hunter2-plain-text' }));
  assert.ok(problems.length > 0);
  assert.doesNotMatch(problems.join('; '), /hunter2/);
});
