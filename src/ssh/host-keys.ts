/** Loads the configured host keys, or generates one ed25519 key in dataDir and reuses it. */
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import ssh2 from 'ssh2';
import { generateEd25519 } from './keygen.ts';

const { utils } = ssh2;

const GENERATED_KEY_FILE = 'ssh_host_ed25519_key';

export async function loadHostKeys(paths: readonly string[], dataDir: string): Promise<Buffer[]> {
  if (paths.length > 0) return Promise.all(paths.map((p) => readKey(p)));
  const path = join(dataDir, GENERATED_KEY_FILE);
  try {
    return [await readKey(path)];
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
  }
  await mkdir(dataDir, { recursive: true });
  const pair = generateEd25519();
  // 'wx' keeps a key another replica or process wrote first.
  await writeFile(path, pair.private, { mode: 0o600, flag: 'wx' }).catch((err: NodeJS.ErrnoException) => {
    if (err.code !== 'EEXIST') throw err;
  });
  return [await readKey(path)];
}

async function readKey(path: string): Promise<Buffer> {
  const data = await readFile(path);
  const parsed = utils.parseKey(data);
  if (parsed instanceof Error) throw new Error(`host key ${path}: ${parsed.message}`);
  const key = Array.isArray(parsed) ? parsed[0] : parsed;
  if (!key?.isPrivateKey()) throw new Error(`host key ${path}: not a private key`);
  return data;
}
