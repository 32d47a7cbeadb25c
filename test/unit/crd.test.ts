/**
 * The SftpUser CRD (crds/sftpusers.s3sftp.io.yaml): what the API server demands of a CRD before it
 * installs it, the examples under examples/, and agreement with the server's own parser
 * (src/users/sftp-user.ts). The parser is the source of truth: a resource the API server admits but
 * the server skips means `kubectl apply` succeeds for a user who then cannot log in. The CRD may be
 * stricter than the parser; the tables below say where, and where it cannot be strict enough.
 */

import { test, describe } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { readdirSync, readFileSync } from 'node:fs';
import type { ValidateFunction } from 'ajv';
import ssh2 from 'ssh2';
import { parse, parseAllDocuments } from 'yaml';
import { passwordHashAlgorithm } from '../../src/auth/password.ts';
import { API_VERSION, KIND, parseSftpUser } from '../../src/users/sftp-user.ts';
import { CEL_STAND_INS, crdAjv, refuseUnknownFields } from '../../src/users/crd-schema.ts';
import { generateEd25519 } from '../../src/ssh/keygen.ts';

const CRD_FILE = new URL('../../crds/sftpusers.s3sftp.io.yaml', import.meta.url);
const EXAMPLES_DIR = new URL('../../examples/', import.meta.url);
const OPTS = { defaultBucket: 'server-bucket', source: 'test' };

/**
 * Fields the CRD has and parseSftpUser does not know yet (it rejects them as unknown). The parser
 * checks below strip them first; a test fails once the parser accepts one, so this list is kept
 * true. Empty since Kubernetes users (issue 3) taught the parser passwordSecretRef and the optional
 * spec.s3 fields.
 */
const NOT_YET_PARSED: string[] = [];

/** The parts of an OpenAPI v3 schema node that this test reads. */
interface Schema {
  type?: string;
  description?: string;
  properties?: Record<string, Schema>;
  items?: Schema;
  additionalProperties?: Schema | boolean;
  required?: string[];
  pattern?: string;
  default?: unknown;
  'x-kubernetes-validations'?: { rule?: string; message?: string }[];
  [keyword: string]: unknown;
}

interface PrinterColumn {
  name: string;
  type: string;
  jsonPath: string;
  description?: string;
  priority?: number;
}

interface CrdVersion {
  name: string;
  served: boolean;
  storage: boolean;
  subresources?: Record<string, unknown>;
  additionalPrinterColumns?: PrinterColumn[];
  schema: { openAPIV3Schema: Schema };
}

interface Crd {
  apiVersion: string;
  kind: string;
  metadata: { name: string };
  spec: {
    group: string;
    scope: string;
    names: { kind: string; listKind: string; plural: string; singular: string; shortNames?: string[] };
    versions: CrdVersion[];
  };
}

const crd = parse(readFileSync(CRD_FILE, 'utf8')) as Crd;
const version = crd.spec.versions[0] as CrdVersion;
const root = version.schema.openAPIV3Schema;

/** Every schema node with its field path: "" for the root, spec.s3.keyPrefix, spec.publicKeys[]. */
function* nodes(node: Schema, path = ''): Generator<[string, Schema]> {
  yield [path, node];
  for (const [name, child] of Object.entries(node.properties ?? {})) {
    yield* nodes(child, path === '' ? name : `${path}.${name}`);
  }
  if (node.items) yield* nodes(node.items, `${path}[]`);
  if (typeof node.additionalProperties === 'object') yield* nodes(node.additionalProperties, `${path}{}`);
}

/** The schema node at a dotted path ("[]" steps into array items), or undefined. */
function nodeAt(from: Schema, path: string): Schema | undefined {
  let node: Schema | undefined = from;
  for (const step of path.split('.').filter((s) => s !== '')) {
    const name = step.replace(/\[\]$/, '');
    node = node?.properties?.[name];
    if (step.endsWith('[]')) node = node?.items;
  }
  return node;
}

// ---- the schema as ajv sees it -------------------------------------------------------------------

let compiled: ValidateFunction | undefined;

/** The CRD's schema compiled once, on first use, so a schema ajv refuses fails a named test. */
function validator(): ValidateFunction {
  compiled ??= crdAjv().compile(refuseUnknownFields(root));
  return compiled;
}

function get(value: unknown, path: string): unknown {
  let v = value;
  for (const step of path.split('.').filter((s) => s !== '')) {
    v = typeof v === 'object' && v !== null ? (v as Record<string, unknown>)[step] : undefined;
  }
  return v;
}

const isSet = (v: unknown) => v !== undefined && v !== null;

// The CEL rules' JavaScript stand-ins are the server's own (src/users/crd-schema.ts): one copy.

/** Why the API server would refuse `doc` (empty if it would admit it). */
function crdErrors(doc: unknown): string[] {
  const validate = validator();
  const errors = validate(doc) ? [] : (validate.errors ?? []).map((e) => `${e.instancePath || '/'} ${e.message}`);
  for (const [path, node] of nodes(root)) {
    const value = get(doc, path);
    if (!isSet(value)) continue; // the API server runs a rule only where its field is present
    for (const { rule = '', message } of node['x-kubernetes-validations'] ?? []) {
      const standIn = CEL_STAND_INS[rule];
      if (!standIn) throw new Error(`CEL rule at ${path || '(root)'} has no stand-in: ${rule}`);
      if (!standIn(value)) errors.push(`${path || '/'} ${message}`);
    }
  }
  return errors;
}

function parserError(doc: unknown): string | undefined {
  const result = parseSftpUser(doc, OPTS);
  return 'error' in result ? result.error : undefined;
}

/** A deep copy of `doc` without the fields at `paths`. */
function without(doc: unknown, paths: string[]): unknown {
  const copy = structuredClone(doc);
  for (const path of paths) {
    const steps = path.split('.');
    const parent = get(copy, steps.slice(0, -1).join('.'));
    if (typeof parent === 'object' && parent !== null) delete (parent as Record<string, unknown>)[steps.at(-1) as string];
  }
  return copy;
}

// ---- the CustomResourceDefinition itself ---------------------------------------------------------

describe('the CustomResourceDefinition', () => {
  test('names, scope and the one served version match what the server expects', () => {
    const { group, names, scope, versions } = crd.spec;
    assert.equal(crd.apiVersion, 'apiextensions.k8s.io/v1');
    assert.equal(crd.kind, 'CustomResourceDefinition');
    assert.equal(crd.metadata.name, `${names.plural}.${group}`, 'the API server requires <plural>.<group>');
    assert.deepEqual(
      { group, kind: names.kind, listKind: names.listKind, plural: names.plural, singular: names.singular, scope },
      { group: 's3sftp.io', kind: 'SftpUser', listKind: 'SftpUserList', plural: 'sftpusers', singular: 'sftpuser', scope: 'Namespaced' },
    );
    const resourceNames = [names.plural, names.singular, ...(names.shortNames ?? [])];
    for (const name of resourceNames) assert.match(name, /^[a-z]([-a-z0-9]*[a-z0-9])?$/, `${name} is not a DNS-1035 label`);
    assert.ok(names.shortNames?.includes('sftpuser'), 'the short name `sftpuser` (issue 3)');
    assert.equal(new Set(names.shortNames).size, names.shortNames?.length, 'short names must not repeat');
    assert.ok(!names.shortNames?.includes(names.plural), 'a short name must not shadow the plural');

    assert.equal(versions.length, 1);
    assert.deepEqual([version.name, version.served, version.storage], ['v1alpha1', true, true]);
    assert.equal(`${group}/${version.name}`, API_VERSION, 'the parser accepts only this apiVersion');
    assert.equal(names.kind, KIND);
    assert.deepEqual(version.subresources, { status: {} });
  });

  test('is a structural schema', () => {
    const types = new Set(['object', 'array', 'string', 'integer', 'number', 'boolean']);
    // Refused in structural schemas, or left to the API server's own handling of metadata.
    const forbidden = ['$ref', '$schema', 'definitions', 'dependencies', 'patternProperties', 'additionalItems', 'id'];
    // Allowed only without type/description/default inside; not needed here, so keep them out.
    const junctors = ['allOf', 'anyOf', 'oneOf', 'not'];
    const problems: string[] = [];
    for (const [path, node] of nodes(root)) {
      const at = path || '(root)';
      if (!node.type || !types.has(node.type)) problems.push(`${at}: needs a type, has ${JSON.stringify(node.type)}`);
      if (node.type === 'array' && !node.items) problems.push(`${at}: an array needs items`);
      if (node.properties && node.additionalProperties !== undefined) {
        problems.push(`${at}: properties and additionalProperties cannot both be set`);
      }
      if (node.uniqueItems === true) problems.push(`${at}: uniqueItems: true is refused by the API server`);
      for (const keyword of [...forbidden, ...junctors]) {
        if (keyword in node) problems.push(`${at}: ${keyword} is not allowed here`);
      }
      const listType = node['x-kubernetes-list-type'];
      if (listType !== undefined && (node.type !== 'array' || !['atomic', 'set', 'map'].includes(String(listType)))) {
        problems.push(`${at}: x-kubernetes-list-type ${String(listType)} needs an array and atomic, set or map`);
      }
      if (listType === 'map') {
        const keys = (node['x-kubernetes-list-map-keys'] ?? []) as string[];
        if (keys.length === 0) problems.push(`${at}: a map list needs x-kubernetes-list-map-keys`);
        if (node.items?.type !== 'object') problems.push(`${at}: a map list needs object items`);
        for (const key of keys) {
          if (!node.items?.required?.includes(key)) problems.push(`${at}: map key ${key} must be required`);
        }
      }
      if ('x-kubernetes-map-type' in node && node.type !== 'object') problems.push(`${at}: x-kubernetes-map-type needs an object`);
    }
    if (root.type !== 'object') problems.push('(root): must be an object');
    if (root.additionalProperties !== undefined) problems.push('(root): additionalProperties is refused at the root');
    // Anything more than `type: object` on the root metadata (even a description) is refused.
    assert.deepEqual(root.properties?.metadata, { type: 'object' });
    assert.equal(root.properties?.apiVersion?.type, 'string');
    assert.equal(root.properties?.kind?.type, 'string');
    assert.deepEqual(problems, []);
  });

  test('compiles with ajv in strict mode, so a misspelt keyword is caught', () => {
    assert.doesNotThrow(() => validator());
  });

  test('documents every field, so kubectl explain does', () => {
    const undocumented = [...nodes(root)]
      .filter(([path, node]) => path !== 'metadata' && !(typeof node.description === 'string' && node.description.trim() !== ''))
      .map(([path]) => path || '(root)');
    assert.deepEqual(undocumented, []);
  });

  test('patterns are anchored and mean the same to Go (API server) and JavaScript (these tests)', () => {
    const problems: string[] = [];
    for (const [path, node] of nodes(root)) {
      const p = node.pattern;
      if (p === undefined) continue;
      // The API server searches for a match anywhere in the value; an unanchored pattern checks little.
      if (!p.startsWith('^') || !p.endsWith('$')) problems.push(`${path}: not anchored with ^...$`);
      // Go's RE2 has no lookaround and no backreferences.
      if (/\(\?[=!<]|\\[1-9]|\\k</.test(p)) problems.push(`${path}: uses lookaround or a backreference`);
      try {
        new RegExp(p, 'u');
      } catch (err) {
        problems.push(`${path}: ${(err as Error).message}`);
      }
    }
    assert.deepEqual(problems, []);
  });

  test('CEL rules have a message, a stand-in here, and name only fields of the schema', () => {
    const problems: string[] = [];
    for (const [path, node] of nodes(root)) {
      for (const { rule, message } of node['x-kubernetes-validations'] ?? []) {
        const at = path || '(root)';
        if (!rule) problems.push(`${at}: a rule without rule text`);
        if (!message) problems.push(`${at}: a rule without a message (the API server would print the rule)`);
        if (rule && !(rule in CEL_STAND_INS)) problems.push(`${at}: no stand-in for ${rule}`);
        if (path.includes('[]')) problems.push(`${at}: stand-ins are not evaluated inside lists`);
        for (const [, fields] of (rule ?? '').matchAll(/\bself((?:\.[A-Za-z_]\w*)+)/g)) {
          // A list macro (self.all(...)) names no field.
          const field = (fields as string).slice(1).replace(/(^|\.)(all|exists|exists_one|map|filter)$/, '');
          if (field === '') continue;
          if (path === '' && /^metadata\.(name|generateName)$/.test(field)) continue; // the only metadata a rule sees
          if (!nodeAt(node, field)) problems.push(`${at}: rule names self.${field}, which the schema does not have`);
        }
      }
    }
    assert.deepEqual(problems, []);
  });

  test('printer columns show fields the schema has', () => {
    const columns = version.additionalPrinterColumns ?? [];
    assert.deepEqual(
      columns.map((c) => c.name),
      ['Username', 'Bucket', 'Prefix', 'Ready', 'Message', 'Age'],
    );
    for (const column of columns) {
      if (column.jsonPath === '.metadata.creationTimestamp') {
        assert.equal(column.type, 'date');
        continue;
      }
      // .status.conditions[?(@.type=="Ready")].status -> status.conditions[].status
      const path = column.jsonPath.replace(/^\./, '').replace(/\[[^\]]*\]/g, '[]');
      const node = nodeAt(root, path);
      assert.ok(node, `${column.name}: ${column.jsonPath} is not in the schema`);
      assert.equal(node.type, column.type, `${column.name}: column type differs from the field's`);
    }
  });

  test('defaults are valid values of their own fields', () => {
    const ajv = crdAjv();
    for (const [path, node] of nodes(root)) {
      if (!('default' in node)) continue;
      const { default: value, ...rest } = node;
      assert.ok(ajv.validate(rest, value), `${path}: default ${JSON.stringify(value)} is invalid`);
    }
  });

  test('status: what the server writes is admitted, malformed conditions are not', () => {
    const status = {
      observedGeneration: 3,
      conditions: [
        {
          type: 'Ready',
          status: 'False',
          reason: 'InvalidSpec',
          message: 'spec.s3.keyPrefix: "/abs" must not start with "/"',
          observedGeneration: 3,
          lastTransitionTime: '2025-06-01T12:00:00Z',
        },
      ],
    };
    const doc = { ...resource(VALID_SPEC), status };
    assert.deepEqual(crdErrors(doc), []);
    const condition = status.conditions[0] as Record<string, unknown>;
    for (const [field, bad] of [
      ['status', 'Yes'],
      ['lastTransitionTime', 'yesterday'],
      ['reason', 'Invalid spec'],
      ['type', ''],
    ] as const) {
      const broken = { ...doc, status: { ...status, conditions: [{ ...condition, [field]: bad }] } };
      assert.notDeepEqual(crdErrors(broken), [], `condition ${field}: ${JSON.stringify(bad)} was admitted`);
    }
  });
});

// ---- examples/ -----------------------------------------------------------------------------------

interface Example {
  where: string;
  doc: Record<string, unknown>;
}

function loadExamples(): Example[] {
  const found: Example[] = [];
  for (const file of readdirSync(EXAMPLES_DIR).filter((f) => /\.ya?ml$/.test(f)).sort()) {
    const docs = parseAllDocuments(readFileSync(new URL(file, EXAMPLES_DIR), 'utf8'));
    if (!Array.isArray(docs)) throw new Error(`${file}: not YAML documents`);
    for (const [i, doc] of docs.entries()) {
      assert.deepEqual(doc.errors, [], `${file} document ${i + 1} is not valid YAML`);
      found.push({ where: `${file} document ${i + 1}`, doc: doc.toJS() as Record<string, unknown> });
    }
  }
  return found;
}

describe('examples/', () => {
  const examples = loadExamples();
  const users = examples.filter((e) => e.doc.kind === KIND);

  test('holds SftpUsers, and Secrets only to go with them', () => {
    assert.ok(users.length >= 4, `expected the four examples, found ${users.length} SftpUsers`);
    for (const { where, doc } of examples) {
      assert.ok(doc.kind === KIND || (doc.kind === 'Secret' && doc.apiVersion === 'v1'), `${where}: kind ${String(doc.kind)}`);
    }
  });

  for (const { where, doc } of users) {
    test(`${where} is admitted by the CRD`, () => {
      assert.deepEqual(crdErrors(doc), []);
    });

    test(`${where} is loaded by the server (without fields it does not know yet)`, () => {
      // Fields the parser does not know yet (NOT_YET_PARSED) are stripped, so the
      // check covers the rest of the resource.
      const result = parseSftpUser(without(doc, NOT_YET_PARSED), OPTS);
      if ('error' in result) assert.fail(result.error);
      assert.deepEqual(result.warnings, [], 'an example user should be able to log in and do something');
    });
  }

  test('each passwordSecretRef names a Secret in the same file with a valid hash', () => {
    const withRef = users.filter((u) => get(u.doc, 'spec.passwordSecretRef') !== undefined);
    assert.ok(withRef.length > 0, 'one example should show passwordSecretRef');
    for (const { where, doc } of withRef) {
      const file = where.replace(/ document \d+$/, '');
      const name = get(doc, 'spec.passwordSecretRef.name');
      const key = String(get(doc, 'spec.passwordSecretRef.key') ?? 'passwordHash');
      const secret = examples.find((e) => e.where.startsWith(file) && e.doc.kind === 'Secret' && get(e.doc, 'metadata.name') === name);
      assert.ok(secret, `${where}: no Secret ${String(name)} in ${file}`);
      const value = get(secret.doc, `stringData.${key}`) ?? Buffer.from(String(get(secret.doc, `data.${key}`)), 'base64').toString();
      assert.ok(passwordHashAlgorithm(String(value)), `${secret.where}: ${key} is not an argon2id or bcrypt hash`);
    }
  });
});

// ---- CRD and parser agree ------------------------------------------------------------------------

// generateEd25519: ssh2 alone now and then writes a 31-byte public key, which the CRD rightly refuses.
const KEY = generateEd25519({ comment: 'alice@laptop' }).public;
const VALID_SPEC = { publicKeys: [KEY], s3: { keyPrefix: 'users/alice/' }, permissions: ['*'] };
const BCRYPT = '$2b$12$Lo5S8gBOMiK8V4iyLX/UTOm1fb4Fu17RUmlkXUIDR7flo3skLY/sO';
const ARGON2ID = '$argon2id$v=19$m=65536,p=4,t=3$rtV4Pag3xfPJmBF6grKXUw$dr/N6KpK7JIR/P7CCnAlmAxxfHRVauOxfieh6CBDHVA';

function resource(spec: Record<string, unknown>, name = 'alice'): Record<string, unknown> {
  return { apiVersion: API_VERSION, kind: KIND, metadata: { name }, spec };
}

/** VALID_SPEC with one field replaced (undefined removes it); `field` is a dotted path under spec. */
function withField(field: string, value: unknown, name?: string): Record<string, unknown> {
  const spec = structuredClone(VALID_SPEC) as Record<string, unknown>;
  const steps = field.split('.');
  const parent = steps.length === 1 ? spec : (get(spec, steps.slice(0, -1).join('.')) as Record<string, unknown>);
  const last = steps.at(-1) as string;
  if (value === undefined) delete parent[last];
  else parent[last] = value;
  return resource(spec, name);
}

/**
 * How the CRD and the parser judge a resource. "crd stricter": the API server refuses what the server
 * would load, which is allowed. "known gap": the API server admits what the server then skips (with
 * Ready=False); each one says why a schema cannot catch it.
 */
type Verdict = 'both accept' | 'both reject' | 'crd stricter' | 'known gap';

function verdict(doc: unknown): { verdict: Verdict; crd: string[]; parser: string | undefined } {
  const crdSays = crdErrors(doc);
  const parserSays = parserError(doc);
  const admitted = crdSays.length === 0;
  const loaded = parserSays === undefined;
  const v: Verdict = admitted ? (loaded ? 'both accept' : 'known gap') : loaded ? 'crd stricter' : 'both reject';
  return { verdict: v, crd: crdSays, parser: parserSays };
}

/** Runs [label, resource, expected verdict] rows and lists every row that came out differently. */
function expectVerdicts(rows: [string, unknown, Verdict][]): void {
  const wrong = rows
    .map(([label, doc, expected]) => ({ label, expected, ...verdict(doc) }))
    .filter((r) => r.verdict !== r.expected)
    .map((r) => `${r.label}: expected ${r.expected}, got ${r.verdict} (crd: ${r.crd.join('; ') || 'ok'}; parser: ${r.parser ?? 'ok'})`);
  assert.deepEqual(wrong, []);
}

function sshString(data: Buffer): Buffer {
  const length = Buffer.alloc(4);
  length.writeUInt32BE(data.length);
  return Buffer.concat([length, data]);
}

describe('the CRD refuses what the server would skip', () => {
  test('the bad resources from the issue are refused by both, naming the field', () => {
    const cases: [string, unknown, string][] = [
      ['keyPrefix "/abs"', withField('s3.keyPrefix', '/abs'), '/spec/s3/keyPrefix'],
      ['keyPrefix "a/../b"', withField('s3.keyPrefix', 'a/../b'), '/spec/s3/keyPrefix'],
      ['permission "admin"', withField('permissions', ['admin']), '/spec/permissions/0'],
      ['public key "not a key"', withField('publicKeys', ['not a key']), '/spec/publicKeys/0'],
      ['no permissions', withField('permissions', undefined), '/spec'],
    ];
    for (const [label, doc, field] of cases) {
      const errors = crdErrors(doc);
      assert.ok(
        errors.some((e) => e.startsWith(`${field} `)),
        `${label}: expected an error at ${field}, got ${JSON.stringify(errors)}`,
      );
      assert.ok(parserError(doc), `${label}: the parser accepted it`);
    }
  });

  test('spec.s3.keyPrefix', () => {
    const rows: [string, string, Verdict][] = [
      ['whole bucket', '', 'both accept'],
      ['one segment', 'a', 'both accept'],
      ['with trailing slash', 'users/alice/', 'both accept'],
      ['without trailing slash', 'users/alice', 'both accept'],
      ['dot files', '.hidden/a./b.c/', 'both accept'],
      ['dots that are not segments', '..a/.../a..b/', 'both accept'],
      ['spaces and unicode', 'reports 2024/ünïcödé/', 'both accept'],
      ['511 characters', 'x'.repeat(511), 'both accept'],
      ['absolute', '/abs', 'both reject'],
      ['only a slash', '/', 'both reject'],
      ['empty segment', 'a//b', 'both reject'],
      ['trailing double slash', 'a//', 'both reject'],
      ['dot', '.', 'both reject'],
      ['dot dot', '..', 'both reject'],
      ['leading dot segment', './a', 'both reject'],
      ['inner dot segment', 'a/./b', 'both reject'],
      ['trailing dot segment', 'a/.', 'both reject'],
      ['trailing dot-dot segment', 'a/../', 'both reject'],
      ['parent escape', 'a/../b', 'both reject'],
      ['leading parent', '../a', 'both reject'],
      ['newline', 'a\nb/', 'both reject'],
      ['tab', 'a\tb/', 'both reject'],
      ['NUL', 'a\u0000b/', 'both reject'],
      ['DEL', 'a\u007fb/', 'both reject'],
      ['512 characters', 'x'.repeat(512), 'both reject'],
      // 511 characters plus "/" is 512 bytes, which the parser allows.
      ['512 characters ending in "/"', `${'x'.repeat(511)}/`, 'crd stricter'],
      // maxLength counts characters and the parser bytes; 300 "é" are 600 bytes.
      ['over 512 bytes of UTF-8 in few characters', 'é'.repeat(300), 'known gap'],
    ];
    expectVerdicts(rows.map(([label, value, v]) => [label, withField('s3.keyPrefix', value), v]));
    expectVerdicts([['missing', withField('s3', {}), 'both reject']]);
  });

  test('spec.username and metadata.name', () => {
    const rows: [string, string, Verdict][] = [
      ['plain', 'alice', 'both accept'],
      ['one character', 'a', 'both accept'],
      ['dots, underscores, digits', 'alice.smith_2', 'both accept'],
      ['hyphen', 'ci-deploy', 'both accept'],
      ['starts with a digit', '0day', 'both accept'],
      ['63 characters', 'x'.repeat(63), 'both accept'],
      ['empty means metadata.name', '', 'both accept'],
      ['upper case', 'Alice', 'both reject'],
      ['leading underscore', '_alice', 'both reject'],
      ['leading dot', '.alice', 'both reject'],
      ['leading hyphen', '-alice', 'both reject'],
      ['space', 'al ice', 'both reject'],
      ['at sign', 'alice@corp', 'both reject'],
      ['64 characters', 'x'.repeat(64), 'both reject'],
      ['non-ASCII', 'élise', 'both reject'],
    ];
    expectVerdicts(rows.map(([label, value, v]) => [label, withField('username', value), v]));
    expectVerdicts([
      ['metadata.name of 63 characters', resource(VALID_SPEC, 'x'.repeat(63)), 'both accept'],
      ['metadata.name of 64 characters (CEL rule)', resource(VALID_SPEC, 'x'.repeat(64)), 'both reject'],
      ['metadata.name of 64 characters with a username', { ...withField('username', 'alice', 'x'.repeat(64)) }, 'both accept'],
    ]);
  });

  test('spec.permissions', () => {
    const rows: [string, unknown, Verdict][] = [
      ['all', ['*'], 'both accept'],
      ['read-only', ['list', 'download'], 'both accept'],
      ['every one by name', ['list', 'download', 'upload', 'overwrite', 'delete', 'rename', 'create_dirs'], 'both accept'],
      ['unknown', ['admin'], 'both reject'],
      ['upper case', ['LIST'], 'both reject'],
      ['empty string', [''], 'both reject'],
      ['not a list', 'list', 'both reject'],
      ['missing', undefined, 'both reject'],
      // The parser loads it with a warning; a user who can do nothing is a mistake.
      ['empty list', [], 'crd stricter'],
    ];
    expectVerdicts(rows.map(([label, value, v]) => [label, withField('permissions', value), v]));
  });

  test('spec.publicKeys', () => {
    const gen = ssh2.utils.generateKeyPairSync;
    const rsa = gen('rsa', { bits: 2048, comment: 'bob@host' }).public;
    const [edType, edBody] = KEY.split(' ') as [string, string];
    const skBlob = Buffer.concat([
      sshString(Buffer.from('sk-ssh-ed25519@openssh.com')),
      sshString(randomBytes(32)),
      sshString(Buffer.from('ssh:')),
    ]);
    const rows: [string, string, Verdict][] = [
      ['ed25519', KEY, 'both accept'],
      ['ed25519 without comment', `${edType} ${edBody}`, 'both accept'],
      ['ed25519 with a tab before a long comment', `${edType} ${edBody}\talice at laptop (2025)`, 'both accept'],
      ['rsa', rsa, 'both accept'],
      ['ecdsa p256', gen('ecdsa', { bits: 256 }).public, 'both accept'],
      ['ecdsa p384', gen('ecdsa', { bits: 384 }).public, 'both accept'],
      ['ecdsa p521', gen('ecdsa', { bits: 521 }).public, 'both accept'],
      ['not a key', 'not a key', 'both reject'],
      ['private key', gen('ed25519').private, 'both reject'],
      ['truncated ed25519', `${edType} ${edBody.slice(0, -4)}`, 'both reject'],
      ['line-wrapped ed25519', `${edType} ${edBody.slice(0, 40)} ${edBody.slice(40)}`, 'both reject'],
      ['type and key disagree', `ssh-rsa ${edBody}`, 'both reject'],
      ['authorized_keys options', `from="10.0.0.0/8" ${KEY}`, 'both reject'],
      // ssh2 cannot parse or verify FIDO security keys, so the CRD does not offer them.
      ['sk-ssh-ed25519', `sk-ssh-ed25519@openssh.com ${skBlob.toString('base64')} alice@yubikey`, 'both reject'],
      // The parser trims; the CRD wants the line as ssh-keygen prints it.
      ['trailing newline', `${KEY}\n`, 'crd stricter'],
      ['leading space', ` ${KEY}`, 'crd stricter'],
      // An RSA key's length varies with its size, so the pattern checks only the start of the key.
      ['truncated rsa', rsa.split(' ').slice(0, 2).join(' ').slice(0, -8), 'known gap'],
    ];
    expectVerdicts(rows.map(([label, value, v]) => [label, withField('publicKeys', [value]), v]));
  });

  test('spec.passwordHash', () => {
    const rows: [string, unknown, Verdict][] = [
      ['argon2id', ARGON2ID, 'both accept'],
      ['bcrypt', BCRYPT, 'both accept'],
      ['bcrypt $2a$', BCRYPT.replace('$2b$', '$2a$'), 'both accept'],
      ['bcrypt $2y$', BCRYPT.replace('$2b$', '$2y$'), 'both accept'],
      ['empty means no password', '', 'both accept'],
      ['a password', 'hunter2', 'both reject'],
      ['bcrypt $2x$', BCRYPT.replace('$2b$', '$2x$'), 'both reject'],
      ['short bcrypt', BCRYPT.slice(0, -1), 'both reject'],
      ['argon2i', ARGON2ID.replace('$argon2id$', '$argon2i$'), 'both reject'],
      ['not a string', 12345, 'both reject'],
    ];
    expectVerdicts(rows.map(([label, value, v]) => [label, withField('passwordHash', value), v]));
  });

  test('spec.s3.bucket and spec.disabled', () => {
    const rows: [string, string, unknown, Verdict][] = [
      ['bucket', 's3.bucket', 'my-bucket', 'both accept'],
      ['bucket with dots', 's3.bucket', 'example.corp.exports', 'both accept'],
      ['legacy bucket name', 's3.bucket', 'Legacy_Bucket', 'both accept'],
      ['empty bucket means the server default', 's3.bucket', '', 'both accept'],
      ['bucket URL', 's3.bucket', 's3://my-bucket', 'both reject'],
      ['bucket with a path', 's3.bucket', 'my-bucket/users', 'both reject'],
      ['bucket with a space', 's3.bucket', 'my bucket', 'both reject'],
      // Characters no S3 bucket name has, which the parser lets through.
      ['bucket ARN', 's3.bucket', 'arn:aws:s3:::my-bucket', 'crd stricter'],
      ['disabled', 'disabled', true, 'both accept'],
      ['disabled as a string', 'disabled', 'yes', 'both reject'],
    ];
    expectVerdicts(rows.map(([label, field, value, v]) => [label, withField(field, value), v]));
  });

  test('misplaced and misspelt fields', () => {
    const spec = structuredClone(VALID_SPEC) as Record<string, unknown>;
    expectVerdicts([
      ['keyPrefix outside s3', resource({ ...spec, keyPrefix: 'users/alice/', s3: {} }), 'both reject'],
      ['keyprefix', resource({ ...spec, s3: { keyprefix: 'users/alice/' } }), 'both reject'],
      ['publickeys', resource({ ...spec, publickeys: [KEY] }), 'both reject'],
      ['no spec', { apiVersion: API_VERSION, kind: KIND, metadata: { name: 'alice' } }, 'both reject'],
    ]);
  });
});

describe('fields for Kubernetes users (issue 3)', () => {
  test('the parser knows every CRD field (NOT_YET_PARSED lists the ones it does not)', () => {
    const values: Record<string, unknown> = {
      'spec.passwordSecretRef': { name: 'alice-password' },
      'spec.s3.region': 'eu-west-1',
      'spec.s3.endpoint': 'http://minio.storage.svc:9000',
      'spec.s3.storageClass': 'STANDARD_IA',
      'spec.s3.roleArn': 'arn:aws:iam::123456789012:role/sftp-alice',
    };
    for (const [path, value] of Object.entries(values)) {
      const doc = withField(path.replace(/^spec\./, ''), value);
      assert.deepEqual(crdErrors(doc), [], `${path}: the CRD refused ${JSON.stringify(value)}`);
      const error = parserError(doc);
      if (NOT_YET_PARSED.includes(path)) assert.match(error ?? '', /is not a known field/, `${path} is parsed now: remove it from NOT_YET_PARSED`);
      else assert.equal(error, undefined, path);
    }
  });

  test('the parser carries them: the Secret reference (key defaults to passwordHash) and the spec.s3 settings', () => {
    const doc = resource({
      ...VALID_SPEC,
      passwordSecretRef: { name: 'alice-password' },
      s3: { keyPrefix: 'users/alice/', region: 'eu-west-1', endpoint: 'https://s3.example.com', storageClass: 'STANDARD_IA', roleArn: 'arn:aws:iam::123456789012:role/sftp-alice' },
    });
    const result = parseSftpUser(doc, OPTS);
    if ('error' in result) assert.fail(result.error);
    assert.deepEqual(result.passwordSecretRef, { name: 'alice-password', key: 'passwordHash' });
    assert.equal(result.user.passwordHash, undefined, 'the Secret is resolved by the Kubernetes source, not the parser');
    assert.deepEqual(result.user.s3, {
      bucket: 'server-bucket',
      keyPrefix: 'users/alice/',
      region: 'eu-west-1',
      endpoint: 'https://s3.example.com',
      storageClass: 'STANDARD_IA',
      roleArn: 'arn:aws:iam::123456789012:role/sftp-alice',
    });
    const plain = parseSftpUser(resource({ ...VALID_SPEC, s3: { keyPrefix: 'a/', region: '', roleArn: '' } }), OPTS);
    if ('error' in plain) assert.fail(plain.error);
    assert.deepEqual(plain.user.s3, { bucket: 'server-bucket', keyPrefix: 'a/' }, 'empty means the server default: not set');
    const onlySecret = parseSftpUser(resource({ s3: { keyPrefix: 'a/' }, permissions: ['*'], passwordSecretRef: { name: 's' } }), OPTS);
    if ('error' in onlySecret) assert.fail(onlySecret.error);
    assert.deepEqual(onlySecret.warnings, [], 'a user with only a Secret reference can log in');
  });

  test('values', () => {
    const rows: [string, string, unknown, boolean][] = [
      ['role', 's3.roleArn', 'arn:aws:iam::123456789012:role/sftp-alice', true],
      ['role with a path', 's3.roleArn', 'arn:aws:iam::123456789012:role/sftp/users/alice', true],
      ['role in China', 's3.roleArn', 'arn:aws-cn:iam::123456789012:role/sftp-alice', true],
      ['role in GovCloud', 's3.roleArn', 'arn:aws-us-gov:iam::123456789012:role/sftp-alice', true],
      ['empty role', 's3.roleArn', '', true],
      ['role of an S3-compatible store with STS', 's3.roleArn', 'arn:minio:iam:::role/sftp-alice', true],
      ['short account', 's3.roleArn', 'arn:aws:iam::12345:role/sftp-alice', false],
      ['a user, not a role', 's3.roleArn', 'arn:aws:iam::123456789012:user/alice', false],
      ['a bucket ARN', 's3.roleArn', 'arn:aws:s3:::my-bucket', false],
      ['a role name', 's3.roleArn', 'sftp-alice', false],
      ['https endpoint', 's3.endpoint', 'https://s3.example.com', true],
      ['in-cluster endpoint', 's3.endpoint', 'http://minio.storage.svc:9000', true],
      ['endpoint with a path', 's3.endpoint', 'https://gw.example.com/s3', true],
      ['endpoint without scheme', 's3.endpoint', 'minio:9000', false],
      ['ftp endpoint', 's3.endpoint', 'ftp://files.example.com', false],
      ['scheme only', 's3.endpoint', 'http://', false],
      ['region', 's3.region', 'eu-west-1', true],
      ['OpenStack region', 's3.region', 'RegionOne', true],
      ['region with spaces', 's3.region', 'eu west 1', false],
      ['storage class', 's3.storageClass', 'INTELLIGENT_TIERING', true],
      ['lower-case storage class', 's3.storageClass', 'standard', false],
      ['secret', 'passwordSecretRef', { name: 'alice-password', key: 'hash' }, true],
      ['secret without a name', 'passwordSecretRef', { key: 'hash' }, false],
      ['secret with an invalid name', 'passwordSecretRef', { name: 'Alice_Password' }, false],
      ['secret with an invalid key', 'passwordSecretRef', { name: 'alice-password', key: 'pass word' }, false],
    ];
    expectVerdicts(rows.map(([label, field, value, admit]) => [label, withField(field, value), admit ? 'both accept' : 'both reject']));
    expectVerdicts([
      ['role ARN longer than 2048', withField('s3.roleArn', `arn:aws:iam::123456789012:role/${'r'.repeat(2048)}`), 'both reject'],
      ['region longer than 64', withField('s3.region', 'r'.repeat(65)), 'both reject'],
      ['secret key left empty', withField('passwordSecretRef', { name: 'alice-password', key: '' }), 'both reject'],
      ['unknown field in passwordSecretRef', withField('passwordSecretRef', { name: 'alice-password', namespace: 'other' }), 'both reject'],
    ]);
  });

  test('passwordHash and passwordSecretRef cannot both be set (CEL rule, and the parser)', () => {
    const ref = { name: 'alice-password' };
    const both = resource({ ...VALID_SPEC, passwordHash: ARGON2ID, passwordSecretRef: ref });
    assert.deepEqual(crdErrors(both), ['spec set either passwordHash or passwordSecretRef, not both']);
    assert.match(parserError(both) ?? '', /spec\.passwordSecretRef: set either passwordHash or passwordSecretRef, not both/);
    const emptyHash = resource({ ...VALID_SPEC, passwordHash: '', passwordSecretRef: ref });
    assert.deepEqual(crdErrors(emptyHash), []);
    assert.equal(parserError(emptyHash), undefined);
  });
});
