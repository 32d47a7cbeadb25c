/**
 * The Makefile's developer targets, run for real: `make help` lists them, and `make chart`
 * packages the Helm chart into dist/ without network, with helm when it is installed and with the
 * tar fallback always (HELM=<missing> forces it). `make image` needs a Docker engine, so only its
 * command line is checked (`make -n`). Whatever a test adds to dist/ is removed afterwards; a package
 * that was there before is put back.
 */

import { test, describe, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync, readFileSync, readdirSync, rmdirSync, rmSync, writeFileSync } from 'node:fs';
import { delimiter, dirname, join } from 'node:path';
import { parse as parseYaml } from 'yaml';

const ROOT = join(import.meta.dirname, '..', '..');
const CHART = join(ROOT, 'charts', 's3sftp');
const chartYaml = readFileSync(join(CHART, 'Chart.yaml'), 'utf8');
const chart = parseYaml(chartYaml) as { name: string; version: string };
const pkg = JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as { version: string };
const DIST = join(ROOT, 'dist');
const PACKAGE = join(DIST, `${chart.name}-${chart.version}.tgz`);

/** Runs make in the repository with this Node first on PATH (so scripts/ensure-node.sh finds Node 24 and downloads nothing). */
function make(...args: string[]): { code: number | null; stdout: string; stderr: string } {
  const r = spawnSync('make', args, {
    cwd: ROOT,
    encoding: 'utf8',
    timeout: 120_000,
    env: { ...process.env, PATH: `${dirname(process.execPath)}${delimiter}${process.env.PATH ?? ''}`, MAKEFLAGS: '' },
  });
  return { code: r.status, stdout: r.stdout ?? '', stderr: `${r.stderr ?? ''}${r.error ? String(r.error) : ''}` };
}

/** The entry names of a .tgz, from `tar tzf`. */
function entries(archive: string): string[] {
  const r = spawnSync('tar', ['tzf', archive], { encoding: 'utf8' });
  assert.equal(r.status, 0, r.stderr);
  return r.stdout.split('\n').filter(Boolean);
}

/** One file's content from a .tgz. */
function member(archive: string, name: string): string {
  const r = spawnSync('tar', ['xzOf', archive, name], { encoding: 'utf8' });
  assert.equal(r.status, 0, r.stderr);
  return r.stdout;
}

test('make help lists the developer targets', () => {
  const r = make('help');
  assert.equal(r.code, 0, r.stderr);
  const listed = new Map(r.stdout.split('\n').map((l) => /^\s+(\S+)\s+(.+)$/.exec(l)).filter((m) => m !== null).map((m) => [m[1] ?? '', m[2] ?? '']));
  for (const target of ['run', 'test', 'build', 'lint', 'image', 'chart']) {
    assert.ok(listed.get(target), `make help does not list ${target}:\n${r.stdout}`);
  }
});

test('make image builds s3sftp:<package.json version> with docker (dry run)', () => {
  const r = make('-n', 'image');
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stdout, new RegExp(`^docker build -t s3sftp:${pkg.version.replaceAll('.', '\\.')} \\.$`, 'm'));
});

describe('make chart', () => {
  const hadDist = existsSync(DIST);
  const previous = existsSync(PACKAGE) ? readFileSync(PACKAGE) : undefined;

  before(() => rmSync(PACKAGE, { force: true }));
  after(() => {
    rmSync(PACKAGE, { force: true });
    rmSync(`${PACKAGE}.tmp`, { force: true });
    if (previous) writeFileSync(PACKAGE, previous);
    else if (!hadDist && existsSync(DIST) && readdirSync(DIST).length === 0) rmdirSync(DIST);
  });

  /** Checks the package make wrote, then removes it. */
  function checkPackage(how: string): void {
    assert.ok(existsSync(PACKAGE), `${how}: no ${PACKAGE}`);
    const names = entries(PACKAGE);
    assert.ok(names.includes('s3sftp/Chart.yaml'), `${how}: no s3sftp/Chart.yaml in ${names.join(', ')}`);
    assert.ok(names.includes('s3sftp/crds/sftpusers.s3sftp.io.yaml'), `${how}: no s3sftp/crds/sftpusers.s3sftp.io.yaml`);
    assert.ok(names.includes('s3sftp/values.yaml') && names.includes('s3sftp/templates/deployment.yaml'), `${how}: values or templates missing`);
    assert.deepEqual(names.filter((n) => !n.startsWith('s3sftp/')), [], `${how}: entries outside s3sftp/`);
    // .helmignore lists ci/ (example values for chart-testing), which helm leaves out.
    assert.deepEqual(names.filter((n) => n.startsWith('s3sftp/ci/')), [], `${how}: ci/ was packaged`);
    assert.equal(member(PACKAGE, 's3sftp/Chart.yaml'), chartYaml);
    rmSync(PACKAGE);
  }

  test('packages the chart as dist/<name>-<version>.tgz (helm when installed, else tar)', () => {
    const r = make('-s', 'chart');
    assert.equal(r.code, 0, r.stderr);
    checkPackage('make -s chart');
  });

  test('the tar fallback builds the same layout without helm', () => {
    const r = make('-s', 'chart', 'HELM=/nonexistent/helm');
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /with tar/);
    checkPackage('make -s chart HELM=/nonexistent/helm');
  });
});
