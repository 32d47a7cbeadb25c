/**
 * Where raw configuration values come from: the YAML file, flattened to dotted keys (with unknown
 * keys reported and near names suggested), and the S3SFTP_* environment variables on top.
 */
import { readFileSync } from 'node:fs';
import { parseDocument } from 'yaml';
import type { ConfigProblem } from './errors.ts';
import type { KeyNames } from './key-names.ts';

/** S3SFTP_ + the dotted path upper-cased with dots as underscores: s3.upload.partSize → S3SFTP_S3_UPLOAD_PARTSIZE. */
export function envName(key: string): string {
  return `S3SFTP_${key.split('.').join('_').toUpperCase()}`;
}

/**
 * The raw value of `key`: env, else the file, else `fallback()`. Empty env vars count as unset:
 * compose files and Helm templates render missing values as "", which should fall back to the
 * file or default. Unknown S3SFTP_* vars are deliberately not errors: Kubernetes injects
 * S3SFTP_PORT, S3SFTP_SERVICE_HOST, ... for a Service named s3sftp.
 */
export function rawValue(
  key: string,
  required: boolean,
  fromFile: ReadonlyMap<string, unknown>,
  env: Record<string, string | undefined>,
): { raw: unknown; env?: string } | { missing: true } {
  const name = envName(key);
  const envValue = env[name];
  if (envValue !== undefined && envValue !== '') return { raw: envValue, env: name };
  if (fromFile.has(key) && !(required && fromFile.get(key) === '')) return { raw: fromFile.get(key) };
  return { missing: true };
}


function isMapping(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/** Flattens the file's mapping into dotted keys, reporting unknown keys and misplaced mappings. */
function flatten(obj: Record<string, unknown>, prefix: string, names: KeyNames, out: Map<string, unknown>, problems: ConfigProblem[]): void {
  for (const [name, value] of Object.entries(obj)) {
    const path = prefix ? `${prefix}.${name}` : name;
    if (names.isLeaf(path)) {
      // An empty YAML value (`endpoint:`) means "not set", not null.
      if (value !== null) out.set(path, value);
    } else if (names.isGroup(path)) {
      if (isMapping(value)) flatten(value, path, names, out, problems);
      else if (value !== null) {
        problems.push({ key: path, message: `must be a mapping with the keys ${names.childrenOf(path).join(', ')}` });
      }
    } else {
      const guesses = names.suggest(path);
      problems.push({
        key: path,
        message: guesses.length > 0
          ? `is not a known key; did you mean ${guesses.join(' or ')}?`
          : `is not a known key; known keys${prefix ? ` in ${prefix}` : ''}: ${names.childrenOf(prefix).join(', ')}`,
      });
    }
  }
}

export function readConfigFile(file: string, names: KeyNames, problems: ConfigProblem[]): Map<string, unknown> {
  const out = new Map<string, unknown>();
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    const why = code === 'ENOENT' ? 'does not exist' : code === 'EACCES' ? 'is not readable' : `cannot be read (${code ?? String(err)})`;
    problems.push({ key: '', message: `config file ${file} ${why}` });
    return out;
  }
  const doc = parseDocument(text, { prettyErrors: true, uniqueKeys: true });
  if (doc.errors.length > 0) {
    for (const e of doc.errors) problems.push({ key: '', message: `config file ${file} is not valid YAML: ${e.message}` });
    return out;
  }
  const root: unknown = doc.toJS();
  if (root === null || root === undefined) return out;
  if (!isMapping(root)) {
    problems.push({ key: '', message: `config file ${file} must be a YAML mapping (key: value lines)` });
    return out;
  }
  flatten(root, '', names, out, problems);
  return out;
}
