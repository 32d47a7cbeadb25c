/**
 * docs/compatibility.md cannot drift from the tests: every row names either
 * an existing integration test (file › exact title) or says why it has none,
 * and every client family the document promises has a row.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';

const ROOT = join(import.meta.dirname, '..', '..');
const DOC = readFileSync(join(ROOT, 'docs', 'compatibility.md'), 'utf8');

interface Row {
  client: string;
  operation: string;
  result: string;
  testedBy: string;
}

function rows(): Row[] {
  return DOC.split('\n')
    .filter((l) => l.startsWith('| ') && !l.startsWith('| Client') && !l.startsWith('| ---'))
    .map((l) => {
      const cells = l.slice(2, -2).split(' | ');
      assert.equal(cells.length, 4, `a row needs 4 cells: ${l}`);
      const [client, operation, result, testedBy] = cells as [string, string, string, string];
      return { client, operation, result, testedBy };
    });
}

const TESTED = /^`([\w.-]+\.test\.ts)` › (.+)$/;
const UNTESTED = /^(not tested here: .+|storage half: (resume|checksums))$/;

test('every row names an existing test by its exact title, or says why it has none', () => {
  const all = rows();
  assert.ok(all.length >= 30, `only ${all.length} rows`);
  for (const row of all) {
    const m = TESTED.exec(row.testedBy);
    if (!m) {
      assert.match(row.testedBy, UNTESTED, `${row.client} / ${row.operation}`);
      continue;
    }
    const [, file, title] = m as unknown as [string, string, string];
    const path = join(ROOT, 'test', 'integration', file);
    assert.ok(existsSync(path), `${file} does not exist (${row.client} / ${row.operation})`);
    const source = readFileSync(path, 'utf8');
    const quoted = [`'${title}'`, `"${title}"`, `\`${title}\``].some((q) => source.includes(`test(${q}`));
    assert.ok(quoted, `${file} has no test titled ${JSON.stringify(title)}`);
  }
});

test('every client family of the issue has a row, and each says what works or what is refused', () => {
  const clients = new Set(rows().flatMap((r) => r.client.split(', ')));
  for (const c of ['OpenSSH sftp', 'OpenSSH scp', 'OpenSSH scp -O', 'rclone', 'lftp', 'sshfs', 'paramiko', 'WinSCP', 'FileZilla', 'psftp (PuTTY)', 'curl']) {
    assert.ok(clients.has(c), `no row for ${c}`);
  }
  for (const r of rows()) assert.match(r.result, /works|refused|answered|No such file|same lines|accepted/, `${r.client} / ${r.operation}`);
});

test('the document does not tell users to change setstatMode to make clients work', () => {
  for (const file of ['README.md', 'docs/compatibility.md', 'docs/s3-limitations.md', 'docs/configuration.md']) {
    const text = readFileSync(join(ROOT, file), 'utf8');
    assert.doesNotMatch(text, /(choose|set|use|needs?) (mode 2|`?setstatMode: ?2`?)/i, file);
  }
});
