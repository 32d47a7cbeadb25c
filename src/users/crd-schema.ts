/**
 * The SftpUser CRD's own openAPIV3Schema (crds/sftpusers.s3sftp.io.yaml), compiled with ajv, so
 * that an SftpUser file in users.directory is refused for exactly what `kubectl apply` refuses.
 * Unknown fields are refused as `kubectl apply --validate=strict` (its default) does. The CRD's
 * CEL rules have JavaScript stand-ins keyed by the rule's text; a rule without one fails at the
 * first validation (and in test/unit/crd.test.ts), so changing a rule means changing its stand-in.
 */
import { readFileSync } from 'node:fs';
import { Ajv, type ErrorObject, type ValidateFunction } from 'ajv';
import { parse } from 'yaml';

/** Two levels up from src/users/ (and dist/users/ in the image) is the project root. */
const CRD_FILE = new URL('../../crds/sftpusers.s3sftp.io.yaml', import.meta.url);

interface Schema {
  properties?: Record<string, Schema>;
  items?: Schema;
  additionalProperties?: Schema | boolean;
  'x-kubernetes-validations'?: { rule?: string; message?: string }[];
  [keyword: string]: unknown;
}

/** The API server's schema extensions: annotations to ajv (the CEL rules get stand-ins below). */
export const K8S_EXTENSIONS = [
  'x-kubernetes-validations',
  'x-kubernetes-list-type',
  'x-kubernetes-list-map-keys',
  'x-kubernetes-map-type',
  'x-kubernetes-preserve-unknown-fields',
  'x-kubernetes-int-or-string',
  'x-kubernetes-embedded-resource',
];

const isSet = (v: unknown) => v !== undefined && v !== null;

function get(value: unknown, path: string): unknown {
  let v = value;
  for (const step of path.split('.').filter((s) => s !== '')) {
    v = typeof v === 'object' && v !== null ? (v as Record<string, unknown>)[step] : undefined;
  }
  return v;
}

/** JavaScript stand-ins for the CRD's CEL rules, keyed by the rule's text (the API server runs the real ones). */
export const CEL_STAND_INS: Record<string, (self: unknown) => boolean> = {
  "!has(self.spec) || (has(self.spec.username) && self.spec.username != '') || size(self.metadata.name) <= 63": (self) =>
    !isSet(get(self, 'spec')) ||
    (isSet(get(self, 'spec.username')) && get(self, 'spec.username') !== '') ||
    [...String(get(self, 'metadata.name'))].length <= 63,
  "!(has(self.passwordHash) && self.passwordHash != '' && has(self.passwordSecretRef))": (spec) =>
    !(isSet(get(spec, 'passwordHash')) && get(spec, 'passwordHash') !== '' && isSet(get(spec, 'passwordSecretRef'))),
  // spec.folders: no folder inside another.
  "self.all(a, self.all(b, a.path == b.path || !b.path.startsWith(a.path + '/')))": (folders) => {
    const paths = (Array.isArray(folders) ? folders : []).map((f) => String(get(f, 'path')));
    return paths.every((a) => paths.every((b) => a === b || !b.startsWith(`${a}/`)));
  },
};

/** A copy in which every object with properties refuses unknown fields. */
export function refuseUnknownFields(node: Schema): Schema {
  const copy: Schema = { ...node };
  if (node.properties) {
    copy.properties = Object.fromEntries(Object.entries(node.properties).map(([k, v]) => [k, refuseUnknownFields(v)]));
    copy.additionalProperties = false;
  }
  if (node.items) copy.items = refuseUnknownFields(node.items);
  return copy;
}

/** Every schema node with a CEL rule, with its dotted path ("" for the root). */
function* ruleNodes(node: Schema, path = ''): Generator<[string, Schema]> {
  if (node['x-kubernetes-validations']) yield [path, node];
  for (const [name, child] of Object.entries(node.properties ?? {})) yield* ruleNodes(child, path === '' ? name : `${path}.${name}`);
}

/**
 * An ajv that reads a CRD schema as the API server does: strict, so a misspelt keyword fails
 * compilation instead of being ignored; RFC 3339 date-time; the x-kubernetes-* annotations known.
 */
export function crdAjv(): Ajv {
  const ajv = new Ajv({
    strict: true,
    allErrors: true,
    formats: {
      'date-time': /^\d{4}-\d{2}-\d{2}[Tt]\d{2}:\d{2}:\d{2}(\.\d+)?([Zz]|[+-]\d{2}:\d{2})$/,
      int64: { type: 'number', validate: (n: number) => Number.isSafeInteger(n) },
    },
  });
  for (const keyword of K8S_EXTENSIONS) ajv.addKeyword(keyword);
  return ajv;
}

interface Compiled {
  validate: ValidateFunction;
  rules: { path: string; check: (self: unknown) => boolean; message: string }[];
}

let compiled: Compiled | undefined;

function compile(): Compiled {
  const crd = parse(readFileSync(CRD_FILE, 'utf8')) as { spec: { versions: { schema: { openAPIV3Schema: Schema } }[] } };
  const root = crd.spec.versions[0]?.schema.openAPIV3Schema;
  if (!root) throw new Error(`${CRD_FILE.pathname} has no openAPIV3Schema`);
  const ajv = crdAjv();
  const rules: Compiled['rules'] = [];
  for (const [path, node] of ruleNodes(root)) {
    for (const { rule = '', message = 'is refused by a validation rule' } of node['x-kubernetes-validations'] ?? []) {
      const check = CEL_STAND_INS[rule];
      if (!check) throw new Error(`CEL rule at ${path || '(root)'} has no stand-in in src/users/crd-schema.ts: ${rule}`);
      rules.push({ path, check, message });
    }
  }
  return { validate: ajv.compile(refuseUnknownFields(root)), rules };
}

/** "/spec/publicKeys/0" → "spec.publicKeys[0]". */
function fieldPath(instancePath: string, child?: string): string {
  const steps = instancePath.split('/').filter((s) => s !== '');
  if (child !== undefined) steps.push(child);
  return steps.reduce((path, step) => (/^\d+$/.test(step) ? `${path}[${step}]` : path ? `${path}.${step}` : step), '');
}

/** One ajv error as "field: what is wrong; what to do". Values are never echoed: one may be a password. */
function describe(e: ErrorObject): string {
  const at = fieldPath(e.instancePath);
  const explain = `see kubectl explain sftpuser.${at.replace(/\[\d+\]/g, '') || 'spec'}`;
  const p = e.params as Record<string, unknown>;
  switch (e.keyword) {
    case 'required':
      return `${fieldPath(e.instancePath, String(p.missingProperty))}: is required`;
    case 'additionalProperties':
      return `${fieldPath(e.instancePath, String(p.additionalProperty))}: is not a known field`;
    case 'type':
      return `${at || '(root)'}: must be ${p.type === 'array' || p.type === 'object' || p.type === 'integer' ? 'an' : 'a'} ${String(p.type)}`;
    case 'maxLength':
      return `${at}: is longer than ${String(p.limit)} characters`;
    case 'minLength':
      return `${at}: must not be empty`;
    case 'minItems':
      return `${at}: must have at least ${String(p.limit)} entr${p.limit === 1 ? 'y' : 'ies'}`;
    case 'enum':
      return `${at}: is not allowed; use one of ${(p.allowedValues as unknown[]).map(String).join(', ')}`;
    case 'pattern':
      return `${at}: is not in the form this field allows; ${explain}`;
    default:
      return `${at || '(root)'}: ${e.message ?? 'is invalid'}`;
  }
}

/**
 * Reads and compiles the schema now (a few hundred milliseconds), so the first user to arrive does
 * not wait for it and a missing or broken CRD file stops the start-up. Throws if it cannot.
 */
export function loadCrdSchema(): void {
  compiled ??= compile();
}

/**
 * Why the API server would refuse this SftpUser: one "field: problem" per problem, empty if it
 * would admit it. `status` is ignored: the server writes it, the owner does not.
 */
export function crdSchemaProblems(doc: unknown): string[] {
  compiled ??= compile();
  const subject = typeof doc === 'object' && doc !== null && !Array.isArray(doc) ? { ...(doc as Record<string, unknown>), status: undefined } : doc;
  if (typeof subject === 'object' && subject !== null) delete (subject as Record<string, unknown>).status;
  const problems = compiled.validate(subject) ? [] : [...new Set((compiled.validate.errors ?? []).map(describe))];
  for (const { path, check, message } of compiled.rules) {
    const value = path === '' ? subject : get(subject, path);
    // The API server runs a rule only where its field is present.
    if (isSet(value) && !check(value)) problems.push(`${path || 'metadata.name'}: ${message}`);
  }
  return problems;
}
