/**
 * Checks of README.md and docs/ against the repository and the code they describe: links resolve
 * (files and heading anchors), JSON blocks parse, the README's config and user blocks list exactly
 * the keys and fields the server knows, and docs/metrics.md and docs/sftpuser.md cover every metric,
 * alert, SftpUser field and Ready reason. (docs/configuration.md's rows are checked against
 * describeConfigKeys() by test/unit/chart.test.ts.)
 *
 * The scans read Markdown as text: fenced code blocks are recognised by ``` lines, links only in
 * the inline form [text](target).
 */

import { ReadAheadBudget } from '../../src/storage/s3/read-ahead.ts';
import { registerQuotaMetrics } from '../../src/metrics/quota.ts';
import { UsageTrackers } from '../../src/storage/quota.ts';
import { test, describe } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, readFileSync, readdirSync, statSync } from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';
import { Registry } from 'prom-client';
import { parse as parseYaml } from 'yaml';
import { describeConfigKeys } from '../../src/config/load.ts';
import { Metrics } from '../../src/metrics/metrics.ts';
import { hardeningMetrics } from '../../src/metrics/hardening.ts';
import { limitMetrics } from '../../src/metrics/limits.ts';
import { listingMetrics } from '../../src/metrics/listing.ts';
import { ListingIndexStore } from '../../src/storage/s3/listing-index.ts';
import { MtimeCache } from '../../src/storage/s3/mtime-cache.ts';
import { pino } from 'pino';
import { UploadBudget } from '../../src/storage/upload-budget.ts';

const ROOT = join(import.meta.dirname, '..', '..');
const read = (...parts: string[]): string => readFileSync(join(...parts), 'utf8');

type Obj = Record<string, unknown>;
const isObj = (v: unknown): v is Obj => typeof v === 'object' && v !== null && !Array.isArray(v);

/** README.md and every Markdown file under docs/, as paths relative to the repository root. */
function markdownFiles(): string[] {
  const out = ['README.md'];
  const walk = (dir: string): void => {
    for (const name of readdirSync(join(ROOT, dir)).sort()) {
      const path = join(dir, name);
      if (statSync(join(ROOT, path)).isDirectory()) walk(path);
      else if (name.endsWith('.md')) out.push(path);
    }
  };
  walk('docs');
  return out;
}

/** The fenced code blocks of a Markdown text, with their info string ("json", "yaml", ""). */
function codeBlocks(text: string): { lang: string; body: string; line: number }[] {
  const blocks: { lang: string; body: string; line: number }[] = [];
  const lines = text.split('\n');
  for (let i = 0; i < lines.length; i++) {
    const open = /^(\s*)```(\S*)/.exec(lines[i] ?? '');
    if (!open) continue;
    const body: string[] = [];
    const start = i + 1;
    while (++i < lines.length && !/^\s*```\s*$/.test(lines[i] ?? '')) body.push(lines[i] ?? '');
    blocks.push({ lang: open[2] ?? '', body: body.join('\n'), line: start });
  }
  return blocks;
}

/** The text outside fenced code blocks and inline code spans, where links are links. */
function prose(text: string): string {
  return text
    .split('\n')
    .reduce<{ out: string[]; fenced: boolean }>(
      (acc, line) => {
        if (/^\s*```/.test(line)) return { out: [...acc.out, ''], fenced: !acc.fenced };
        return { out: [...acc.out, acc.fenced ? '' : line.replace(/`[^`]*`/g, '')], fenced: acc.fenced };
      },
      { out: [], fenced: false },
    )
    .out.join('\n');
}

/** GitHub's anchor for a heading: lower case, punctuation dropped, spaces to "-"; repeats get -1, -2. */
function anchors(text: string): Set<string> {
  const seen = new Map<string, number>();
  const out = new Set<string>();
  let fenced = false;
  for (const line of text.split('\n')) {
    if (/^\s*```/.test(line)) fenced = !fenced;
    const m = fenced ? null : /^#{1,6}\s+(.*?)\s*#*\s*$/.exec(line);
    if (!m) continue;
    const base = (m[1] ?? '')
      .replace(/`([^`]*)`/g, '$1')
      .replace(/\[([^\]]*)\]\([^)]*\)/g, '$1')
      .toLowerCase()
      .replace(/[^\p{L}\p{N}\s_-]/gu, '')
      .replace(/\s/g, '-');
    const n = seen.get(base) ?? 0;
    seen.set(base, n + 1);
    out.add(n === 0 ? base : `${base}-${n}`);
  }
  return out;
}

/** Inline links [text](target) outside code. */
function links(text: string): string[] {
  return [...prose(text).matchAll(/\[[^\]]*\]\(([^)\s]+)(?:\s+"[^"]*")?\)/g)].map((m) => m[1] ?? '');
}

describe('links', () => {
  const files = markdownFiles();

  test('the scan finds the documents and their links', () => {
    for (const f of ['README.md', 'docs/configuration.md', 'docs/operations-eks.md', 'docs/sftpuser.md', 'docs/metrics.md', 'docs/s3-limitations.md']) {
      assert.ok(files.includes(f), `${f} is missing`);
    }
    assert.ok(links(read(ROOT, 'README.md')).length >= 5);
  });

  for (const file of files) {
    test(`every relative link in ${file} points to an existing file (and heading)`, () => {
      const broken: string[] = [];
      const text = read(ROOT, file);
      for (const target of links(text)) {
        if (/^[a-z][a-z0-9+.-]*:/i.test(target)) continue; // https:, mailto:
        const [path = '', anchor] = target.split('#');
        const abs = path === '' ? join(ROOT, file) : resolve(ROOT, dirname(file), decodeURI(path));
        if (!abs.startsWith(ROOT)) {
          broken.push(`${target} (outside the repository)`);
          continue;
        }
        if (!existsSync(abs)) {
          broken.push(`${target} (no ${relative(ROOT, abs)})`);
          continue;
        }
        if (anchor !== undefined && abs.endsWith('.md') && !anchors(readFileSync(abs, 'utf8')).has(anchor)) {
          broken.push(`${target} (no heading #${anchor} in ${relative(ROOT, abs)})`);
        }
      }
      assert.deepEqual(broken, []);
    });
  }

  test('the anchor rule matches GitHub on the headings these docs use (self-check)', () => {
    const found = anchors('# A\n## 4. SSH host keys\n### A role on top: `config.s3.credentials.roleArn`\n### spec.permissions\n## A\n```\n# not a heading\n```\n');
    assert.deepEqual([...found], ['a', '4-ssh-host-keys', 'a-role-on-top-configs3credentialsrolearn', 'specpermissions', 'a-1']);
  });
});

describe('README.md', () => {
  const readme = read(ROOT, 'README.md');

  test('starts with the two commands', () => {
    const start = [
      '# s3sftp',
      '',
      '```sh',
      'make run    # local S3 emulator (OpenStack Swift) + the server with a demo user on 127.0.0.1:2022',
      'make test   # every test: unit tests, and integration tests with real Swift S3 + real sftp/scp/rclone/lftp/paramiko clients',
      '```',
      '',
    ].join('\n');
    assert.ok(readme.startsWith(start), 'README.md must keep starting with the make run / make test block');
  });

  const policies = codeBlocks(readme).filter((b) => b.lang === 'json');

  test('every JSON block parses', () => {
    assert.ok(policies.length >= 2, 'expected the trust policy and the S3 policy as JSON blocks');
    for (const { body, line } of policies) {
      assert.doesNotThrow(() => JSON.parse(body), `the JSON block at README.md line ${line} does not parse`);
    }
  });

  /** Every statement of every policy, with its actions as a list. */
  const statements: (Obj & { actions: string[] })[] = policies.flatMap(({ body }) => {
    const doc = JSON.parse(body) as { Statement?: Obj[] };
    return (doc.Statement ?? []).map((s) => ({ ...s, actions: ([] as unknown[]).concat(s.Action ?? []).map(String) }));
  });

  test('the IRSA trust policy: web identity, conditions on :sub (the ServiceAccount) and :aud', () => {
    const trust = statements.find((s) => s.actions.includes('sts:AssumeRoleWithWebIdentity'));
    assert.ok(trust, 'no statement allows sts:AssumeRoleWithWebIdentity');
    assert.match(String((trust.Principal as Obj | undefined)?.Federated), /^arn:aws:iam::\d{12}:oidc-provider\//);
    const equals = (trust.Condition as { StringEquals?: Record<string, string> } | undefined)?.StringEquals ?? {};
    const sub = Object.entries(equals).find(([k]) => k.endsWith(':sub'));
    const aud = Object.entries(equals).find(([k]) => k.endsWith(':aud'));
    assert.match(sub?.[1] ?? '', /^system:serviceaccount:[a-z0-9-]+:[a-z0-9-]+$/);
    assert.equal(aud?.[1], 'sts.amazonaws.com');
  });

  test('the S3 policy allows what the server calls, and ListBucket without a prefix for HeadBucket', () => {
    const actions = new Set(statements.flatMap((s) => s.actions));
    for (const a of ['s3:ListBucket', 's3:ListBucketMultipartUploads', 's3:GetObject', 's3:PutObject', 's3:DeleteObject', 's3:AbortMultipartUpload', 'sts:AssumeRole']) {
      assert.ok(actions.has(a), `no policy allows ${a}`);
    }
    const headBucket = statements.find((s) => s.actions.includes('s3:ListBucket') && JSON.stringify(s.Condition ?? {}).includes('"Null"'));
    assert.ok(headBucket, 'no s3:ListBucket statement with a Null s3:prefix condition (the start-up HeadBucket check)');
  });

  /** The first YAML block whose text matches `marker`, parsed. */
  const yamlBlock = (marker: RegExp): unknown => {
    const block = codeBlocks(readme).find((b) => b.lang === 'yaml' && marker.test(b.body));
    assert.ok(block, `no yaml block matching ${marker}`);
    return parseYaml(block.body);
  };

  const leafPaths = (obj: Obj, prefix = ''): string[] =>
    Object.entries(obj).flatMap(([k, v]) => (isObj(v) ? leafPaths(v, prefix ? `${prefix}.${k}` : k) : [prefix ? `${prefix}.${k}` : k]));

  test('the configuration block has every config key, each at its default (the bucket aside)', () => {
    const config = yamlBlock(/^listen:/m) as Obj;
    const keys = describeConfigKeys();
    assert.deepEqual(leafPaths(config).sort(), keys.map((k) => k.key).sort());
    const differ: string[] = [];
    for (const k of keys) {
      if (k.key === 's3.bucket') continue;
      let value: unknown = config;
      for (const part of k.key.split('.')) value = (value as Obj)[part];
      if (JSON.stringify(value) !== JSON.stringify(k.default)) differ.push(`${k.key}: README ${JSON.stringify(value)}, server ${JSON.stringify(k.default)}`);
    }
    assert.deepEqual(differ, []);
  });

  test('the users block has exactly the spec fields of the SftpUser CRD', () => {
    const user = yamlBlock(/^metadata: \{ name: alice \}/m) as { spec: Obj };
    const crd = crdSpecFields();
    // passwordSecretRef is shown commented out, as the alternative to passwordHash.
    const shown = [...leafPaths(user.spec), 'passwordSecretRef.name', 'passwordSecretRef.key'];
    // The SSE-C alternatives to spec.s3.sse.mode are shown commented out too.
    shown.push('s3.sse.customerKeySecretRef.name', 's3.sse.customerKeySecretRef.key', 's3.sse.customerKeyFile');
    shown.sort();
    const leaves = crd.filter((f) => !crd.some((g) => g.startsWith(`${f}.`)));
    assert.deepEqual(shown, leaves.sort());
  });
});

/** The CRD's spec fields as dotted paths below spec ("s3.keyPrefix", "passwordSecretRef.key"), parents included. */
function crdSpecFields(): string[] {
  const crd = parseYaml(read(ROOT, 'crds', 'sftpusers.s3sftp.io.yaml')) as {
    spec: { versions: { schema: { openAPIV3Schema: { properties: { spec: Obj } } } }[] };
  };
  const spec = crd.spec.versions[0]?.schema.openAPIV3Schema.properties.spec;
  assert.ok(spec);
  const walk = (node: Obj, prefix: string): string[] =>
    Object.entries((node.properties ?? {}) as Record<string, Obj>).flatMap(([k, v]) => {
      const path = prefix ? `${prefix}.${k}` : k;
      return [path, ...walk(v, path)];
    });
  return walk(spec, '');
}

describe('docs/metrics.md', () => {
  const doc = read(ROOT, 'docs', 'metrics.md');

  /** The server's own metrics with their types and label names (per-user labels on). */
  async function serverMetrics(): Promise<{ name: string; type: string; labels: string[] }[]> {
    const registry = new Registry();
    new Metrics({ registry, perUserLabels: true, processMetrics: false });
    registerQuotaMetrics(registry, new UsageTrackers({ rescanIntervalMs: 0, scanConcurrency: 1 }), true);
    hardeningMetrics(registry, { bannedSources: () => 0, unauthenticatedConnections: () => 0, verifications: () => ({ running: 0, queued: 0 }) });
    limitMetrics(registry, new UploadBudget(2 ** 30), new ReadAheadBudget(1));
    listingMetrics(registry, new MtimeCache(), new ListingIndexStore({ log: pino({ level: 'silent' }) }));
    return (await registry.getMetricsAsJSON()).map((m) => ({
      name: m.name,
      type: String(m.type),
      labels: [...((registry.getSingleMetric(m.name) as unknown as { labelNames?: string[] }).labelNames ?? [])],
    }));
  }

  /** The cells of the table row that starts with `name`. */
  const row = (name: string): string[] | undefined => {
    const line = doc.split('\n').find((l) => l.startsWith(`| \`${name}\` |`));
    return line?.split('|').slice(1, -1).map((c) => c.trim());
  };

  test('every metric the server exports has a row with its type and labels', async () => {
    const metrics = await serverMetrics();
    assert.ok(metrics.length >= 10, `found only ${metrics.length} metrics; is the scan broken?`);
    const problems: string[] = [];
    for (const m of metrics) {
      const cells = row(m.name);
      if (!cells) {
        problems.push(`${m.name}: no row`);
        continue;
      }
      if (cells[1] !== m.type) problems.push(`${m.name}: type ${cells[1]}, server ${m.type}`);
      for (const l of m.labels) if (!cells[2]?.includes(`\`${l}\``)) problems.push(`${m.name}: label ${l} not listed`);
      for (const l of cells[2]?.matchAll(/`(\w+)`/g) ?? []) if (!m.labels.includes(l[1] ?? '')) problems.push(`${m.name}: documents label ${l[1]}, which it does not have`);
    }
    assert.deepEqual(problems, []);
  });

  test('every s3sftp_ metric the page names exists', async () => {
    const names = new Set((await serverMetrics()).map((m) => m.name));
    const histograms = new Set((await serverMetrics()).filter((m) => m.type === 'histogram').map((m) => m.name));
    const unknown = [...new Set(doc.match(/\bs3sftp_[a-z0-9_]+/g) ?? [])].filter((n) => {
      if (names.has(n)) return false;
      const base = /^(.*)_(bucket|sum|count)$/.exec(n)?.[1];
      return !(base && histograms.has(base));
    });
    assert.deepEqual(unknown, []);
  });

  test('every alert of the chart is described', () => {
    const rules = read(ROOT, 'charts', 's3sftp', 'templates', 'prometheusrule.yaml');
    const alerts = [...rules.matchAll(/-\s+alert:\s*(\S+)/g)].map((m) => m[1] ?? '');
    assert.ok(alerts.length >= 3);
    assert.deepEqual(alerts.filter((a) => !doc.includes(`\`${a}\``)), []);
  });

  test('/healthz and /readyz and the readiness reasons are described', () => {
    const server = read(ROOT, 'src', 'server.ts');
    const reasons = [...(/const notReadyReason[\s\S]*?\n {2}\};/.exec(server)?.[0] ?? '').matchAll(/return '([^']+)'/g)].map((m) => m[1] ?? '');
    assert.ok(reasons.length >= 3, 'cannot find the readiness reasons in src/server.ts');
    for (const text of ['/healthz', '/readyz', '/metrics', ...reasons.map((r) => `\`${r}\``)]) assert.ok(doc.includes(text), `${text} is not described`);
  });
});

describe('docs/sftpuser.md', () => {
  const doc = read(ROOT, 'docs', 'sftpuser.md');

  /** The string literals of a union type alias in a source file, following one alias it names. */
  function unionLiterals(file: string, type: string): string[] {
    const src = read(ROOT, file);
    const body = new RegExp(`export type ${type} =([^;]+);`).exec(src)?.[1] ?? '';
    const literals = [...body.matchAll(/'([A-Za-z]+)'/g)].map((m) => m[1] ?? '');
    for (const ref of body.matchAll(/\|\s*([A-Z]\w+)\s*(?=\||$)/g)) {
      const name = ref[1] ?? '';
      const from = new RegExp(`import type \\{[^}]*\\b${name}\\b[^}]*\\} from '([^']+)'`).exec(src)?.[1];
      assert.ok(from, `${file}: cannot find where ${name} comes from`);
      literals.push(...unionLiterals(relative(ROOT, resolve(ROOT, dirname(file), from)), name));
    }
    return literals;
  }

  test('every Ready reason the server can write is in the table', () => {
    const reasons = unionLiterals('src/kube/sftp-user-resource.ts', 'ReadyReason');
    assert.ok(reasons.length >= 7, `found only ${reasons.join(', ')}`);
    assert.deepEqual(reasons.filter((r) => !new RegExp(`^\\| (True|False) \\| \`${r}\` \\|`, 'm').test(doc)), []);
  });

  test('every spec field of the CRD is documented', () => {
    assert.deepEqual(crdSpecFields().filter((f) => !doc.includes(`\`spec.${f}`)), []);
  });

  test('every permission is explained', () => {
    const crd = read(ROOT, 'crds', 'sftpusers.s3sftp.io.yaml');
    const permissions = /enum: \["\*", ([^\]]+)\]/.exec(crd)?.[1]?.split(',').map((p) => p.trim()) ?? [];
    assert.ok(permissions.length >= 7);
    assert.deepEqual(permissions.filter((p) => !new RegExp(`^\\| \`${p}\` \\|`, 'm').test(doc)), []);
  });
});

test('every JSON block in docs/ parses', () => {
  for (const file of markdownFiles().filter((f) => f.startsWith('docs'))) {
    for (const { lang, body, line } of codeBlocks(read(ROOT, file))) {
      if (lang === 'json') assert.doesNotThrow(() => JSON.parse(body), `${file} line ${line}`);
    }
  }
});

describe('the README draws the code as it is', () => {
  /** The entries of README's "Source layout" tree: top-level names under src/, "name/" for folders. */
  function layoutEntries(): string[] {
    const readme = read(ROOT, 'README.md');
    const section = readme.slice(readme.indexOf('### Source layout'));
    const block = codeBlocks(section)[0];
    assert.ok(block, 'README.md has no tree under "### Source layout"');
    return block.body
      .split('\n')
      .map((line) => /^ {2}(\S+)/.exec(line)?.[1])
      .filter((name): name is string => name !== undefined);
  }

  test('every folder and file directly under src/ is in the source layout, and nothing else', () => {
    const actual = readdirSync(join(ROOT, 'src'))
      .map((name) => (statSync(join(ROOT, 'src', name)).isDirectory() ? `${name}/` : name))
      .sort();
    assert.deepEqual([...layoutEntries()].sort(), actual);
  });

  test('the test description matches package.json: unit tests need no S3 server, `npm test` runs every file', () => {
    const pkg = JSON.parse(read(ROOT, 'package.json')) as { scripts: Record<string, string> };
    assert.match(pkg.scripts['test:unit'] ?? '', /test\/unit\//);
    assert.match(pkg.scripts.test ?? '', /"test\/\*\*\/\*\.test\.ts"/);
    const readme = read(ROOT, 'README.md');
    assert.match(readme, /`make test-unit`\s+runs `test\/unit\/`/);
    assert.match(readme, /`make\s+test` runs every file under `test\/`/);
  });

  test('the Events the server records are granted in the chart and documented', () => {
    const sources: string[] = [];
    const walk = (dir: string): void => {
      for (const name of readdirSync(join(ROOT, dir))) {
        const path = join(dir, name);
        if (statSync(join(ROOT, path)).isDirectory()) walk(path);
        else if (name.endsWith('.ts')) sources.push(read(ROOT, path));
      }
    };
    walk('src');
    const emits = sources.some((text) => /events\.k8s\.io/.test(text));
    const rbac = read(ROOT, 'charts', 's3sftp', 'templates', 'rbac.yaml');
    const docs = read(ROOT, 'docs', 'sftpuser.md');
    if (emits) {
      assert.match(rbac, /apiGroups: \["events\.k8s\.io"\]\s+resources: \["events"\]\s+verbs: \["create"\]/);
      assert.match(docs, /events\.k8s\.io\/v1/);
      assert.doesNotMatch(docs, /writes no Events/);
    } else {
      assert.doesNotMatch(rbac, /resources: \["events"\]/);
      assert.match(docs, /writes no Events/);
    }
  });

  test('the lease namespace fallbacks in src/server.ts are all documented on the key', () => {
    const server = read(ROOT, 'src', 'server.ts');
    const doc = describeConfigKeys().find((k) => k.key === 'users.kubernetes.leaseNamespace')?.doc ?? '';
    assert.match(read(ROOT, 'src', 'config', 'load.ts'), /options\.env\.POD_NAMESPACE/);
    assert.match(doc, /POD_NAMESPACE/);
    if (server.includes('contextNamespace(kubeConfig)')) assert.match(doc, /kubeconfig context/);
    if (/\|\| kubernetes\.namespace/.test(server)) assert.match(doc, /users\.kubernetes\.namespace/);
  });
});

describe('docs/adr', () => {
  const adrs = readdirSync(join(ROOT, 'docs', 'adr'))
    .filter((name) => name.endsWith('.md'))
    .sort();

  test('every ADR is named NNNN-title.md', () => {
    assert.ok(adrs.length > 0, 'docs/adr has ADRs');
    for (const name of adrs) assert.match(name, /^\d{4}-[a-z0-9]+(-[a-z0-9]+)*\.md$/, name);
  });

  // Branches written side by side each took the next free number; merged, four ADRs were 0012.
  test('no two ADRs share a number', () => {
    const byNumber = new Map<string, string[]>();
    for (const name of adrs) {
      const number = name.slice(0, 4);
      byNumber.set(number, [...(byNumber.get(number) ?? []), name]);
    }
    const shared = [...byNumber.values()].filter((names) => names.length > 1);
    assert.deepEqual(shared, [], 'renumber all but the oldest to the next free numbers and update their references');
  });

  test("each ADR's title carries its file's number", () => {
    for (const name of adrs) {
      const title = read(ROOT, 'docs', 'adr', name).split('\n')[0] ?? '';
      const number = /^#\s+(\d+)/.exec(title)?.[1];
      assert.equal(Number(number), Number(name.slice(0, 4)), `${name}: ${title}`);
    }
  });
});
