/**
 * Static checks of the Helm chart in charts/s3sftp, without helm: the values and their schema, the
 * names the templates use (values paths, config keys, env vars), the CRD copy, and the metric names
 * in the dashboard and the alerting rules against the server's metric contract.
 *
 * Limitations of the template scans (they read text, they do not render):
 * - `.Values.a.b` and `$.Values.a.b` are found anywhere, and `$v.c` where the same file assigns
 *   `$v := .Values.a.b`; paths reached through `with`/`range` (`.c` inside `with .Values.a`) or
 *   `index .Values "a"` are not checked.
 * - The ConfigMap's config file is read by indentation, two spaces per level, one key per line.
 */

import { test, describe } from 'node:test';
import assert from 'node:assert/strict';
import { generateKeyPairSync } from 'node:crypto';
import { existsSync, readFileSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { Ajv } from 'ajv';
import ssh2 from 'ssh2';
import { parse as parseYaml } from 'yaml';
import { describeConfigKeys, type ConfigDefault } from '../../src/config/load.ts';

const ROOT = join(import.meta.dirname, '..', '..');
const CHART = join(ROOT, 'charts', 's3sftp');
const TEMPLATES = join(CHART, 'templates');

const read = (...parts: string[]): string => readFileSync(join(...parts), 'utf8');
const readYaml = (...parts: string[]): unknown => parseYaml(read(...parts));

/**
 * Config keys the chart already renders that the server does not describe yet (being added by
 * other work), with the defaults they are specified to have. Remove an entry once describeConfigKeys()
 * lists the key: the tests then check the chart against the server's own default.
 */
const PENDING_CONFIG_KEYS: Readonly<Record<string, ConfigDefault>> = {};

/** Where the chart's default deliberately differs from the server's, and why. */
const CHART_DEFAULTS_DIFFER: Readonly<Record<string, string>> = {
  'users.kubernetes.enabled': 'on Kubernetes the chart serves SftpUser resources by default',
};

/** Config keys the templates set themselves rather than from values (ports, mounted paths). */
const CHART_OWNED_CONFIG_KEYS = ['listen', 'hostKeys', 'dataDir', 'metrics.listen'];

const SERVER_KEYS = new Map(describeConfigKeys().map((k) => [k.key, k]));
const KNOWN_CONFIG_KEYS = new Set([...SERVER_KEYS.keys(), ...Object.keys(PENDING_CONFIG_KEYS)]);

/** The env var for a config key, by the rule in src/config/load.ts (checked against it below). */
const envName = (key: string): string => `S3SFTP_${key.split('.').join('_').toUpperCase()}`;

/** The metric contract: names, types and labels the server exports (`user` only with config.metrics.perUserLabels). */
const METRICS: Readonly<Record<string, { type: 'counter' | 'gauge' | 'histogram'; labels: readonly string[] }>> = {
  s3sftp_upload_completion_lag_seconds: { type: 'histogram', labels: [] },
  s3sftp_upload_pending_bytes: { type: 'gauge', labels: [] },
  s3sftp_upload_parts_in_flight: { type: 'gauge', labels: [] },
  s3sftp_s3_part_upload_duration_seconds: { type: 'histogram', labels: [] },
  s3sftp_s3_requests_total: { type: 'counter', labels: ['operation', 'outcome'] },
  s3sftp_s3_request_duration_seconds: { type: 'histogram', labels: ['operation'] },
  s3sftp_transfers_total: { type: 'counter', labels: ['direction', 'outcome', 'user'] },
  s3sftp_transfer_bytes_total: { type: 'counter', labels: ['direction', 'user'] },
  s3sftp_sessions_active: { type: 'gauge', labels: ['user'] },
  s3sftp_auth_attempts_total: { type: 'counter', labels: ['method', 'outcome'] },
  s3sftp_users_loaded: { type: 'gauge', labels: [] },
};

/** Labels Prometheus adds to every series scraped through a ServiceMonitor. */
const TARGET_LABELS = ['namespace', 'service', 'pod', 'job', 'instance', 'container', 'endpoint'];

type Obj = Record<string, unknown>;
const isObj = (v: unknown): v is Obj => typeof v === 'object' && v !== null && !Array.isArray(v);

/** Helm's coalescing of a -f values file over the chart's values: maps merge, null deletes, the rest replaces. */
function helmMerge(base: Obj, over: Obj): Obj {
  const out: Obj = { ...base };
  for (const [k, v] of Object.entries(over)) {
    if (v === null) delete out[k];
    else if (isObj(v) && isObj(out[k])) out[k] = helmMerge(out[k] as Obj, v);
    else out[k] = v;
  }
  return out;
}

/** Dotted paths of the leaves of a mapping ("s3.upload.partSize"). */
function leafPaths(obj: Obj, prefix = ''): string[] {
  return Object.entries(obj).flatMap(([k, v]) => {
    const path = prefix ? `${prefix}.${k}` : k;
    return isObj(v) ? leafPaths(v, path) : [path];
  });
}

function templateFiles(): string[] {
  return readdirSync(TEMPLATES).filter((f) => /\.(ya?ml|tpl|txt)$/.test(f));
}

const values = readYaml(CHART, 'values.yaml') as Obj;
const schema = JSON.parse(read(CHART, 'values.schema.json')) as Obj;
const validate = new Ajv({ allErrors: true, strict: true }).compile(schema);
const validationErrors = (v: unknown): string =>
  validate(v) ? '' : (validate.errors ?? []).map((e) => `${e.instancePath || '/'} ${e.message ?? ''}`).join('; ');

describe('values and schema', () => {
  test('the schema is draft-07', () => {
    assert.equal(schema.$schema, 'http://json-schema.org/draft-07/schema#');
  });

  test('values.yaml validates against values.schema.json', () => {
    assert.equal(validationErrors(values), '');
  });

  const ciFiles = readdirSync(join(CHART, 'ci')).filter((f) => f.endsWith('.yaml'));
  test('there are example values files in ci/', () => {
    assert.ok(ciFiles.length >= 2, `expected example values in ${join(CHART, 'ci')}`);
  });
  for (const file of ciFiles) {
    test(`ci/${file} over values.yaml validates`, () => {
      const merged = helmMerge(values, readYaml(CHART, 'ci', file) as Obj);
      assert.equal(validationErrors(merged), '');
    });
  }

  const wrong: [string, Obj][] = [
    ['replicaCount "two"', { replicaCount: 'two' }],
    ['service.port "x"', { service: { port: 'x' } }],
    ['an unknown top-level key', { replicas: 3 }],
    ['an unknown config key', { config: { s3: { bukket: 'files' } } }],
    ['an ambiguous size unit', { config: { s3: { upload: { partSize: '16M' } } } }],
    ['a duration without a unit after a number with one', { config: { shutdownGracePeriod: '1m30' } }],
    ['an unknown log level', { config: { log: { level: 'verbose' } } }],
    ['a boolean as a string', { config: { users: { kubernetes: { enabled: 'true' } } } }],
    ['terminationGracePeriodSeconds "60s"', { terminationGracePeriodSeconds: '60s' }],
    ['a bucket URL', { config: { s3: { bucket: 's3://files' } } }],
  ];
  for (const [what, override] of wrong) {
    test(`rejects ${what}`, () => {
      assert.notEqual(validationErrors(helmMerge(values, override)), '', `${JSON.stringify(override)} was accepted`);
    });
  }

  test('accepts the duration and size forms the server accepts', () => {
    for (const d of ['30', 30, '250ms', '1h30m', '2.5s', '0s']) {
      assert.equal(validationErrors(helmMerge(values, { config: { shutdownGracePeriod: d } })), '', `duration ${d}`);
    }
    for (const s of ['16MiB', '5MB', 16777216, '1GiB']) {
      assert.equal(validationErrors(helmMerge(values, { config: { s3: { upload: { partSize: s } } } })), '', `size ${s}`);
    }
  });
});

describe('template references', () => {
  /** Every values path a template file reads, with the files that read it. */
  function valuesPaths(): Map<string, Set<string>> {
    const paths = new Map<string, Set<string>>();
    const add = (path: string, file: string): void => {
      if (!paths.has(path)) paths.set(path, new Set());
      paths.get(path)?.add(file);
    };
    for (const file of templateFiles()) {
      const text = read(TEMPLATES, file);
      for (const m of text.matchAll(/\.Values((?:\.[A-Za-z_]\w*)+)/g)) add((m[1] ?? '').slice(1), file);
      // `$rule := .Values.metrics.prometheusRule` ... `$rule.labels`
      for (const m of text.matchAll(/(\$[A-Za-z_]\w*)\s*:?=\s*\.Values((?:\.[A-Za-z_]\w*)+)/g)) {
        const [, variable = '', base = ''] = m;
        const uses = new RegExp(`\\${variable}((?:\\.[A-Za-z_]\\w*)+)`, 'g');
        for (const u of text.matchAll(uses)) add(`${base.slice(1)}${u[1] ?? ''}`, file);
      }
    }
    return paths;
  }

  test('every .Values path used in a template exists in values.yaml', () => {
    const missing: string[] = [];
    const found = valuesPaths();
    assert.ok(found.size > 30, `found only ${found.size} values paths; is the scan broken?`);
    for (const [path, files] of found) {
      let node: unknown = values;
      for (const part of path.split('.')) {
        if (!isObj(node) || !Object.hasOwn(node, part)) {
          missing.push(`${path} (${[...files].join(', ')})`);
          break;
        }
        node = node[part];
      }
    }
    assert.deepEqual(missing, [], 'paths read by templates but absent from values.yaml');
  });

  test('every top-level value is used by some template', () => {
    const used = new Set([...valuesPaths().keys()].map((p) => p.split('.')[0]));
    const unused = Object.keys(values).filter((k) => k !== 'global' && !used.has(k));
    assert.deepEqual(unused, []);
  });

  test('every S3SFTP_* variable the templates set is a config key\'s env var', () => {
    const envs = new Set([...KNOWN_CONFIG_KEYS].map(envName));
    for (const k of SERVER_KEYS.values()) assert.equal(k.env, envName(k.key), 'env naming rule changed in load.ts');
    const used = templateFiles().flatMap((f) => [...read(TEMPLATES, f).matchAll(/\bS3SFTP_[A-Z0-9_]+/g)].map((m) => m[0]));
    assert.ok(used.length > 0);
    assert.deepEqual(used.filter((e) => !envs.has(e)), []);
  });
});

describe('the config file in the ConfigMap', () => {
  /** The keys of the config.yaml block in configmap.yaml, each with the line's template text. */
  function renderedConfigKeys(): Map<string, string> {
    const lines = read(TEMPLATES, 'configmap.yaml').split('\n');
    const start = lines.findIndex((l) => /^\s*config\.yaml:\s*\|/.test(l));
    assert.ok(start >= 0, 'configmap.yaml has no `config.yaml: |` block');
    const outer = (lines[start] ?? '').search(/\S/);
    const keys = new Map<string, string>();
    const stack: string[] = [];
    let base = -1;
    for (const line of lines.slice(start + 1)) {
      if (line.trim() === '' || /^\s*\{\{-?[^}]*-?\}\}\s*$/.test(line)) continue; // blank or template-only line
      const indent = line.search(/\S/);
      if (indent <= outer) break;
      if (base < 0) base = indent;
      const m = /^\s*([A-Za-z0-9_]+):\s*(.*)$/.exec(line);
      assert.ok(m, `cannot read config line ${JSON.stringify(line)}`);
      const [, name = '', rest = ''] = m;
      const depth = (indent - base) / 2;
      assert.ok(Number.isInteger(depth) && depth <= stack.length, `bad indentation: ${JSON.stringify(line)}`);
      stack.length = depth;
      if (rest === '') stack.push(name);
      else keys.set([...stack, name].join('.'), rest);
    }
    return keys;
  }

  test('every key is one the server knows (describeConfigKeys() or pending)', () => {
    const keys = [...renderedConfigKeys().keys()];
    assert.ok(keys.length > 20, `found only ${keys.length} keys; is the scan broken?`);
    assert.deepEqual(keys.filter((k) => !KNOWN_CONFIG_KEYS.has(k)), []);
  });

  test('each key is rendered from the value of the same name under config', () => {
    for (const [key, text] of renderedConfigKeys()) {
      const refs = [...text.matchAll(/\.Values\.config((?:\.\w+)+)/g)].map((m) => (m[1] ?? '').slice(1));
      if (CHART_OWNED_CONFIG_KEYS.includes(key)) {
        assert.deepEqual(refs, [], `${key} is set by the chart, not from config values`);
      } else if (key === 'users.kubernetes.namespace') {
        assert.match(text, /s3sftp\.watchNamespace/, 'namespace goes through the watchNamespace helper');
      } else {
        assert.deepEqual(refs, [key], `${key} should be rendered from .Values.config.${key}`);
      }
    }
  });

  test('every value under config is rendered, and is a known key', () => {
    const rendered = renderedConfigKeys();
    const configValues = leafPaths(values.config as Obj);
    assert.deepEqual(configValues.filter((k) => !KNOWN_CONFIG_KEYS.has(k)), [], 'unknown keys under config in values.yaml');
    assert.deepEqual(configValues.filter((k) => !rendered.has(k)), [], 'values under config that the ConfigMap ignores');
  });

  test('the chart defaults under config equal the server defaults', () => {
    const differ: string[] = [];
    for (const key of leafPaths(values.config as Obj)) {
      if (CHART_DEFAULTS_DIFFER[key] || key === 's3.bucket') continue; // the bucket is required: no default
      const server = SERVER_KEYS.has(key) ? SERVER_KEYS.get(key)?.default : PENDING_CONFIG_KEYS[key];
      let chart: unknown = values.config;
      for (const part of key.split('.')) chart = (chart as Obj)[part];
      if (JSON.stringify(chart) !== JSON.stringify(server)) differ.push(`${key}: chart ${JSON.stringify(chart)}, server ${JSON.stringify(server)}`);
    }
    assert.deepEqual(differ, []);
  });

  test('pending keys (reported, not failed): keys the chart uses that describeConfigKeys() does not list yet', (t) => {
    const pending = Object.keys(PENDING_CONFIG_KEYS).filter((k) => !SERVER_KEYS.has(k));
    t.diagnostic(pending.length ? `still pending: ${pending.join(', ')}` : 'none pending: PENDING_CONFIG_KEYS can be emptied');
  });

  test('docs/configuration.md lists every key with its env var', () => {
    const doc = read(ROOT, 'docs', 'configuration.md');
    const missing = [...KNOWN_CONFIG_KEYS].filter((k) => !doc.includes(`\`${k}\``) || !doc.includes(`\`${envName(k)}\``));
    assert.deepEqual(missing, []);
  });
});

describe('host keys', () => {
  const secret = read(TEMPLATES, 'hostkeys-secret.yaml');
  const generated = [...secret.matchAll(/^\s*(\w+):\s*\{\{\s*genPrivateKey\s+"(\w+)"/gm)].map((m) => ({ file: m[1] ?? '', type: m[2] ?? '' }));

  test('the generated Secret holds keys of types the server can read, under the names the config lists', () => {
    assert.ok(generated.length > 0, 'no genPrivateKey in hostkeys-secret.yaml');
    const helpers = read(TEMPLATES, '_helpers.tpl');
    const pathsHelper = /define "s3sftp\.hostKeyPaths"[\s\S]*?\{\{-? end -?\}\}\s*\{\{-? end -?\}\}/.exec(helpers)?.[0] ?? '';
    for (const { file, type } of generated) {
      // ed25519 would be PKCS#8 ("PRIVATE KEY"), which ssh2 cannot parse.
      assert.ok(['ecdsa', 'rsa'].includes(type), `genPrivateKey "${type}" makes a key ssh2 cannot read`);
      assert.match(pathsHelper, new RegExp(`"${file}"`), `${file} is not in the s3sftp.hostKeyPaths helper`);
    }
  });

  test('ssh2 parses keys in the formats genPrivateKey writes (SEC1 P-256 and PKCS#1 RSA)', () => {
    const ec = generateKeyPairSync('ec', { namedCurve: 'P-256', privateKeyEncoding: { type: 'sec1', format: 'pem' }, publicKeyEncoding: { type: 'spki', format: 'pem' } });
    const rsa = generateKeyPairSync('rsa', { modulusLength: 2048, privateKeyEncoding: { type: 'pkcs1', format: 'pem' }, publicKeyEncoding: { type: 'spki', format: 'pem' } });
    for (const [pem, type] of [[ec.privateKey, 'ecdsa-sha2-nistp256'], [rsa.privateKey, 'ssh-rsa']] as const) {
      const parsed = ssh2.utils.parseKey(pem);
      assert.ok(!(parsed instanceof Error), parsed instanceof Error ? parsed.message : '');
      const key = Array.isArray(parsed) ? parsed[0] : parsed;
      assert.equal(key?.type, type);
      assert.ok(key?.isPrivateKey());
    }
  });
});

test('the chart CRD is a byte-for-byte copy of crds/sftpusers.s3sftp.io.yaml', () => {
  const source = join(ROOT, 'crds', 'sftpusers.s3sftp.io.yaml');
  const copy = join(CHART, 'crds', 'sftpusers.s3sftp.io.yaml');
  assert.ok(existsSync(source), `${source} is missing: the chart cannot install the SftpUser CRD`);
  assert.ok(existsSync(copy), `${copy} is missing; cp ${source} ${copy}`);
  assert.ok(readFileSync(source).equals(readFileSync(copy)), `the chart's CRD differs from ${source}; cp ${source} ${copy}`);
});

test('Chart.yaml appVersion equals the package.json version', () => {
  const chart = readYaml(CHART, 'Chart.yaml') as Obj;
  const pkg = JSON.parse(read(ROOT, 'package.json')) as { version: string };
  assert.equal(chart.appVersion, pkg.version);
  assert.equal(chart.apiVersion, 'v2');
});

describe('metric names in the dashboard and the alerting rules', () => {
  const KEYWORDS = new Set(['by', 'without', 'on', 'ignoring', 'group_left', 'group_right', 'bool', 'and', 'or', 'unless', 'offset', 'inf', 'nan']);

  /** The metric names, label matchers and grouping labels of a PromQL expression (a simple scanner, not a parser). */
  function scanPromQL(expr: string): { selectors: { name: string; labels: string[] }[]; grouping: string[] } {
    const selectors: { name: string; labels: string[] }[] = [];
    const grouping: string[] = [];
    for (const m of expr.matchAll(/\b(by|without|on|ignoring|group_left|group_right)\s*\(([^)]*)\)/g)) {
      grouping.push(...(m[2] ?? '').split(',').map((s) => s.trim()).filter(Boolean));
    }
    let rest = expr
      .replace(/"(?:[^"\\]|\\.)*"/g, '""')
      .replace(/\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)/g, ' ');
    for (const m of rest.matchAll(/([A-Za-z_:][\w:]*)\s*\{([^}]*)\}/g)) {
      const labels = [...(m[2] ?? '').matchAll(/([A-Za-z_]\w*)\s*(?:=~|!~|!=|=)/g)].map((l) => l[1] ?? '');
      selectors.push({ name: m[1] ?? '', labels });
    }
    rest = rest.replace(/\{[^}]*\}/g, ' ').replace(/\[[^\]]*\]/g, ' ').replace(/\$\{?\w+\}?/g, ' ');
    for (const m of rest.matchAll(/(?<![\w.$])([A-Za-z_:][\w:]*)(?![\w:]|\s*\()/g)) {
      const name = m[1] ?? '';
      if (!KEYWORDS.has(name.toLowerCase()) && !selectors.some((s) => s.name === name)) selectors.push({ name, labels: [] });
    }
    return { selectors, grouping };
  }

  /** The contract entry for a series name, allowing _bucket/_sum/_count on histograms only. */
  function contractOf(name: string): { base: string; bucket: boolean } | undefined {
    if (METRICS[name]) return { base: name, bucket: false };
    const m = /^(.*)_(bucket|sum|count)$/.exec(name);
    if (m && METRICS[m[1] ?? '']?.type === 'histogram') return { base: m[1] ?? '', bucket: m[2] === 'bucket' };
    return undefined;
  }

  /** Problems with one expression: names outside the contract, labels the metrics do not have. */
  function checkExpr(expr: string, where: string): { problems: string[]; metrics: string[] } {
    const problems: string[] = [];
    const metrics: string[] = [];
    const { selectors, grouping } = scanPromQL(expr);
    if (selectors.length === 0) problems.push(`${where}: no metric found in ${JSON.stringify(expr)}`);
    const available = new Set(TARGET_LABELS);
    for (const { name, labels } of selectors) {
      const c = contractOf(name);
      if (!c) {
        problems.push(`${where}: ${name} is not a contract metric`);
        continue;
      }
      metrics.push(c.base);
      const own = new Set([...TARGET_LABELS, ...(METRICS[c.base]?.labels ?? []), ...(c.bucket ? ['le'] : [])]);
      for (const l of own) available.add(l);
      for (const l of labels) if (!own.has(l)) problems.push(`${where}: ${name} has no label ${l}`);
    }
    for (const l of grouping) if (!available.has(l)) problems.push(`${where}: grouping by ${l}, which none of its metrics has`);
    return { problems, metrics };
  }

  const dashboard = JSON.parse(read(CHART, 'dashboards', 's3sftp.json')) as Obj;

  /** Every Prometheus target (expr + legendFormat) in the dashboard's panels. */
  function dashboardTargets(): { panel: string; expr: string; legendFormat: string }[] {
    const out: { panel: string; expr: string; legendFormat: string }[] = [];
    const walk = (panels: unknown): void => {
      for (const p of Array.isArray(panels) ? panels : []) {
        if (!isObj(p)) continue;
        for (const t of Array.isArray(p.targets) ? p.targets : []) {
          if (isObj(t) && typeof t.expr === 'string') {
            out.push({ panel: String(p.title), expr: t.expr, legendFormat: typeof t.legendFormat === 'string' ? t.legendFormat : '' });
          }
        }
        walk(p.panels);
      }
    };
    walk(dashboard.panels);
    return out;
  }

  test('the dashboard is Grafana JSON with panels and Prometheus queries', () => {
    assert.equal(typeof dashboard.title, 'string');
    assert.ok(dashboardTargets().length >= 10);
  });

  test('every dashboard query uses only contract metrics and their labels', () => {
    const problems = dashboardTargets().flatMap(({ panel, expr }) => checkExpr(expr, `panel "${panel}"`).problems);
    assert.deepEqual(problems, []);
  });

  test('legends name only labels the query keeps', () => {
    const problems: string[] = [];
    for (const { panel, expr, legendFormat } of dashboardTargets()) {
      const kept = new Set(scanPromQL(expr).grouping);
      for (const m of legendFormat.matchAll(/\{\{\s*(\w+)\s*\}\}/g)) {
        if (!kept.has(m[1] ?? '')) problems.push(`panel "${panel}": legend {{${m[1]}}} but the query keeps only ${[...kept].join(', ') || 'no labels'}`);
      }
    }
    assert.deepEqual(problems, []);
  });

  test('the dashboard variables query contract metrics', () => {
    const list = (isObj(dashboard.templating) && Array.isArray(dashboard.templating.list) ? dashboard.templating.list : []) as Obj[];
    const queries = list.filter((v) => v.type === 'query').map((v) => (isObj(v.query) ? String(v.query.query) : String(v.query)));
    assert.ok(queries.length > 0);
    for (const q of queries) {
      const m = /^label_values\((.+),\s*(\w+)\)$/.exec(q);
      assert.ok(m, `unexpected variable query ${q}`);
      assert.deepEqual(checkExpr(m[1] ?? '', q).problems, []);
      assert.ok(TARGET_LABELS.includes(m[2] ?? ''), `${q}: ${m[2]} is not a target label`);
    }
  });

  test('the dashboard shows every contract metric', () => {
    const shown = new Set(dashboardTargets().flatMap(({ expr }) => checkExpr(expr, '').metrics));
    assert.deepEqual(Object.keys(METRICS).filter((m) => !shown.has(m)), []);
  });

  /** The expr of every rule in prometheusrule.yaml, with template actions replaced by 0. */
  function ruleExprs(): { alert: string; expr: string }[] {
    const lines = read(TEMPLATES, 'prometheusrule.yaml').split('\n');
    const out: { alert: string; expr: string }[] = [];
    let alert = '';
    for (let i = 0; i < lines.length; i++) {
      const line = lines[i] ?? '';
      const a = /^\s*- alert:\s*(\S+)/.exec(line);
      if (a) alert = a[1] ?? '';
      const e = /^(\s*)expr:\s*(.*)$/.exec(line);
      if (!e) continue;
      const indent = (e[1] ?? '').length;
      let expr = e[2] ?? '';
      if (/^[|>]-?$/.test(expr)) {
        expr = '';
        while (i + 1 < lines.length && ((lines[i + 1] ?? '').trim() === '' || (lines[i + 1] ?? '').search(/\S/) > indent)) {
          expr += `${lines[++i] ?? ''}\n`;
        }
      }
      out.push({ alert, expr: expr.replace(/\{\{[^}]*\}\}/g, '0') });
    }
    return out;
  }

  test('every alert expression uses only contract metrics and their labels', () => {
    const rules = ruleExprs();
    assert.ok(rules.length >= 3, `found ${rules.length} rules`);
    assert.deepEqual(rules.flatMap(({ alert, expr }) => checkExpr(expr, alert).problems), []);
  });

  test('the alerts cover upload lag, failed logins and S3 errors', () => {
    const used = new Set(ruleExprs().flatMap(({ expr }) => checkExpr(expr, '').metrics));
    for (const m of ['s3sftp_upload_completion_lag_seconds', 's3sftp_auth_attempts_total', 's3sftp_s3_requests_total']) {
      assert.ok(used.has(m), `no alert on ${m}`);
    }
  });

  test('the scanner finds what it should (self-check)', () => {
    const { selectors, grouping } = scanPromQL(
      'histogram_quantile(0.95, sum by (le, operation) (rate(s3sftp_s3_request_duration_seconds_bucket{pod=~"$pod", outcome!="x"}[5m]))) / on(pod) s3sftp_users_loaded > 1e3',
    );
    assert.deepEqual(selectors, [
      { name: 's3sftp_s3_request_duration_seconds_bucket', labels: ['pod', 'outcome'] },
      { name: 's3sftp_users_loaded', labels: [] },
    ]);
    assert.deepEqual(grouping, ['le', 'operation', 'pod']);
    assert.deepEqual(checkExpr('sum(s3sftp_sessions_active_count)', 'x').problems, ['x: s3sftp_sessions_active_count is not a contract metric']);
    assert.deepEqual(checkExpr('s3sftp_transfers_total{result="ok"}', 'x').problems, ['x: s3sftp_transfers_total has no label result']);
  });
});
