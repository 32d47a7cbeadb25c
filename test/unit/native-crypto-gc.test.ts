/**
 * The Node 24 pin and ssh2's native crypto binding must survive garbage collection of closed
 * connections' ciphers. Node 24.19.0-24.21.x compile ObjectWrap cleanup hooks into addons whose
 * destructor aborts the process when the GC reclaims a wrapped object (nodejs/node issue 65446,
 * mscdex/ssh2 issue 1511): every pod would die after enough connections. scripts/ensure-node.sh pins
 * a release without it; this test fails if the pin (or the Dockerfile's image) moves back into that range.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..', '..');
const require = createRequire(import.meta.url);
const binding = join(dirname(require.resolve('ssh2/package.json')), 'lib', 'protocol', 'crypto', 'build', 'Release', 'sshcrypto.node');

// Many short-lived deciphers and ciphers of each kind, then full collections: what a server does
// over hours of connections, in a second.
const CHURN = `
const b = require(${JSON.stringify(binding)});
const key = Buffer.alloc(64, 1);
let keep = [];
for (let i = 0; i < 100000; i++) {
  keep.push(new b.ChaChaPolyDecipher(key), new b.ChaChaPolyCipher(key));
  if (keep.length > 1000) keep = [];
}
keep = [];
globalThis.gc();
setTimeout(() => { globalThis.gc(); process.stdout.write('survived'); }, 100);
`;

test("ssh2's native ciphers can be garbage-collected without aborting the process", { skip: !existsSync(binding) && 'ssh2 was installed without its native binding' }, () => {
  const run = spawnSync(process.execPath, ['--expose-gc', '-e', CHURN], { encoding: 'utf8', timeout: 60_000 });
  assert.equal(run.signal, null, `node ${process.version} was killed by ${run.signal}: ${run.stderr.split('\n').slice(0, 3).join(' ')}`);
  assert.equal(run.status, 0, run.stderr);
  assert.equal(run.stdout, 'survived');
});

test('the pinned Node and the image are outside the 24.19-24.21 range', () => {
  const pinned = /NODE_VERSION="\$\{S3SFTP_NODE_VERSION:-([\d.]+)\}"/.exec(readFileSync(join(ROOT, 'scripts', 'ensure-node.sh'), 'utf8'))?.[1];
  const image = /ARG NODE_IMAGE=node:([\d.]+)-/.exec(readFileSync(join(ROOT, 'Dockerfile'), 'utf8'))?.[1];
  for (const [what, version] of [['scripts/ensure-node.sh', pinned], ['Dockerfile NODE_IMAGE', image]] as const) {
    assert.ok(version, `${what} pins an exact Node version`);
    const [major, minor] = version.split('.').map(Number);
    assert.ok(!(major === 24 && (minor ?? 0) >= 19 && (minor ?? 0) <= 21), `${what} pins Node ${version}, which aborts in ssh2's native ciphers`);
  }
});
