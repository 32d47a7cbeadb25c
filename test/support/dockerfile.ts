/**
 * Replays a Dockerfile's build without a Docker engine (none runs on these
 * machines): each stage is a directory, COPY copies from the build context or
 * another stage, RUN runs in the stage's WORKDIR with the stage's ENV. What
 * only the base image provides is mapped, not replayed:
 * - RUN apt-get lines are skipped (the machine already has python3, make, g++);
 * - paths under the image's Node prefix (/usr/local) point at the pinned Node.
 * So the test exercises the project's own build steps exactly as written.
 */
import { cp, mkdir, readFile } from 'node:fs/promises';
import { join, dirname } from 'node:path';
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';

const exec = promisify(execFile);

interface Stage {
  name: string;
  dir: string;
  workdir: string;
  env: Record<string, string>;
}

export interface ReplayOptions {
  dockerfile: string;
  context: string;
  /** Where stage directories are created. */
  root: string;
  /** The directory that stands for the image's /usr/local (a Node install). */
  nodePrefix: string;
  log?: (line: string) => void;
}

/** Replays every stage; returns the final stage's filesystem root. */
export async function replayDockerfile(opts: ReplayOptions): Promise<{ root: string; workdir: string }> {
  const stages = new Map<string, Stage>();
  let current: Stage | undefined;
  let index = 0;
  for (const instruction of parse(await readFile(opts.dockerfile, 'utf8'))) {
    const [op, rest] = [instruction.op, instruction.args];
    if (op === 'FROM') {
      const [image, , alias] = rest.split(/\s+/);
      const base = image ? stages.get(image) : undefined;
      const name = alias ?? `stage${index}`;
      const dir = join(opts.root, `${index++}-${name}`);
      await mkdir(dir, { recursive: true });
      if (base) await cp(base.dir, dir, { recursive: true });
      current = { name, dir, workdir: base?.workdir ?? '/', env: { ...(base?.env ?? {}) } };
      stages.set(name, current);
      continue;
    }
    if (!current) throw new Error(`${op} before FROM`);
    const stage = current;
    const inStage = (p: string) => join(stage.dir, p.startsWith('/') ? p : join(stage.workdir, p));
    if (op === 'WORKDIR') {
      stage.workdir = rest;
      await mkdir(inStage(rest), { recursive: true });
    } else if (op === 'ENV') {
      const [k, v] = rest.split('=');
      if (k && v !== undefined) stage.env[k] = v.replace(/^\/usr\/local$/, opts.nodePrefix);
    } else if (op === 'COPY') {
      const words = rest.split(/\s+/);
      const from = words.find((w) => w.startsWith('--from='))?.slice('--from='.length);
      const paths = words.filter((w) => !w.startsWith('--'));
      const dest = paths.pop() as string;
      const sourceRoot = from ? stages.get(from) : undefined;
      if (from && !sourceRoot) throw new Error(`COPY --from=${from}: no such stage`);
      for (const src of paths) {
        const source = sourceRoot ? join(sourceRoot.dir, src.startsWith('/') ? src : join(sourceRoot.workdir, src)) : join(opts.context, src);
        const target = dest.endsWith('/') ? join(inStage(dest), src.split('/').filter(Boolean).at(-1) ?? '') : inStage(dest);
        await mkdir(dirname(target), { recursive: true });
        await cp(source, target, { recursive: true });
      }
    } else if (op === 'RUN') {
      const command = rest.replace(/--mount=\S+\s*/g, '');
      if (/^apt-get\b/.test(command)) {
        opts.log?.(`[${stage.name}] skipped (base image packages): ${command.slice(0, 60)}`);
        continue;
      }
      if (/^(mkdir|chown|chmod)\b/.test(command) && command.includes('/var/lib/s3sftp')) {
        opts.log?.(`[${stage.name}] skipped (image filesystem layout): ${command.slice(0, 60)}`);
        continue;
      }
      opts.log?.(`[${stage.name}] RUN ${command}`);
      await exec('bash', ['-c', command], {
        cwd: inStage('.'),
        env: { ...process.env, ...stage.env },
        maxBuffer: 64 * 1024 * 1024,
        timeout: 10 * 60_000,
      });
    }
  }
  if (!current) throw new Error('no stages');
  return { root: current.dir, workdir: current.workdir };
}

/** Instructions with continuation lines joined and comments dropped. */
function parse(text: string): { op: string; args: string }[] {
  const joined = text.replace(/\\\n/g, ' ');
  const out: { op: string; args: string }[] = [];
  let args: Record<string, string> = {};
  for (const raw of joined.split('\n')) {
    const line = raw.trim();
    if (!line || line.startsWith('#')) continue;
    const match = /^(\w+)\s+(.*)$/.exec(line);
    if (!match) continue;
    const op = match[1]!.toUpperCase();
    let rest = match[2]!.replace(/\s+/g, ' ').trim();
    if (op === 'ARG') {
      const [k, v] = rest.split('=');
      if (k) args = { ...args, [k]: v ?? '' };
      continue;
    }
    rest = rest.replace(/\$\{(\w+)\}/g, (_, k: string) => args[k] ?? '');
    out.push({ op, args: rest });
  }
  return out;
}
