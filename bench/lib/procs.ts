/**
 * CPU and memory of a server under test, read from /proc: the server is started in its own process
 * group (spawn detached), and its cost is the sum over that group — sshd's per-connection children
 * and sftp-server included. CPU of children that already exited is in the leader's cutime/cstime
 * once reaped, so the leader's four counters plus the live members' own two cover everything.
 */
import { readdirSync, readFileSync } from 'node:fs';
import { spawn, type ChildProcess, type SpawnOptions } from 'node:child_process';

const TICKS = 100; // USER_HZ on Linux

interface Stat {
  pid: number;
  pgrp: number;
  /** utime + stime, seconds. */
  own: number;
  /** cutime + cstime, seconds. */
  children: number;
}

function readStat(pid: number): Stat | undefined {
  try {
    const text = readFileSync(`/proc/${pid}/stat`, 'utf8');
    // The command name (field 2) may contain spaces and parentheses: split after the last ')'.
    const f = text.slice(text.lastIndexOf(')') + 2).split(' ');
    return { pid, pgrp: Number(f[2]), own: (Number(f[11]) + Number(f[12])) / TICKS, children: (Number(f[13]) + Number(f[14])) / TICKS };
  } catch {
    return undefined;
  }
}

function groupMembers(pgrp: number): number[] {
  const pids: number[] = [];
  for (const name of readdirSync('/proc')) {
    const pid = Number(name);
    if (!Number.isInteger(pid)) continue;
    const st = readStat(pid);
    if (st?.pgrp === pgrp) pids.push(pid);
  }
  return pids;
}

/** CPU seconds (user + sys) used so far by the process group led by `leader`. */
export function groupCpuSeconds(leader: number): number {
  let total = 0;
  for (const pid of groupMembers(leader)) {
    const st = readStat(pid);
    if (!st) continue;
    total += st.own + (pid === leader ? st.children : 0);
  }
  return total;
}

/**
 * CPU seconds the whole machine has spent busy so far (user, nice, system, irq, softirq over all
 * cores, from /proc/stat): the client, the server and the S3 server together, plus anything else running.
 */
export function machineBusySeconds(): number {
  const cpu = readFileSync('/proc/stat', 'utf8').split('\n', 1)[0]!.split(/\s+/).slice(1).map(Number);
  const [user, nice, system, , , irq, softirq] = cpu;
  return ((user ?? 0) + (nice ?? 0) + (system ?? 0) + (irq ?? 0) + (softirq ?? 0)) / TICKS;
}

/** Resident memory (bytes) of the process group now. */
export function groupRssBytes(leader: number): number {
  let total = 0;
  for (const pid of groupMembers(leader)) {
    try {
      const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
      if (m) total += Number(m[1]) * 1024;
    } catch {
      // exited meanwhile
    }
  }
  return total;
}

/**
 * The lowest RSS of the process group over `ms`: a process that just did work still holds garbage
 * its next collection returns, so one sample can sit tens of MiB above what it really keeps.
 */
export async function settledRssBytes(leader: number, ms = 3000, everyMs = 100): Promise<number> {
  let low = groupRssBytes(leader);
  for (let waited = 0; waited < ms; waited += everyMs) {
    await new Promise((resolve) => setTimeout(resolve, everyMs));
    low = Math.min(low, groupRssBytes(leader));
  }
  return low;
}

/** Samples RSS every `everyMs` until stopped; keeps the series for the chart and the peak. */
export class RssSampler {
  readonly series: { t: number; rss: number }[] = [];
  peak = 0;
  readonly #timer: NodeJS.Timeout;
  readonly t0 = performance.now();
  constructor(leader: number, everyMs = 200) {
    const sample = () => {
      const rss = groupRssBytes(leader);
      this.peak = Math.max(this.peak, rss);
      this.series.push({ t: (performance.now() - this.t0) / 1000, rss });
    };
    sample();
    this.#timer = setInterval(sample, everyMs);
  }
  stop(): void {
    clearInterval(this.#timer);
  }
}

/** Starts a server in its own process group, stderr kept for error messages. */
export function spawnServer(cmd: string, args: string[], opts: SpawnOptions = {}): { child: ChildProcess; stderr: () => string } {
  const child = spawn(cmd, args, { ...opts, detached: true, stdio: ['ignore', 'pipe', 'pipe'] });
  let err = '';
  child.stderr?.on('data', (d: Buffer) => (err = (err + d.toString()).slice(-4000)));
  child.stdout?.on('data', () => undefined);
  return { child, stderr: () => err };
}

/** SIGTERM to the whole group, SIGKILL after a moment; resolves once the leader exited. */
export async function stopGroup(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null || child.pid === undefined) return;
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  const kill = (sig: NodeJS.Signals) => {
    try {
      process.kill(-child.pid!, sig);
    } catch {
      // already gone
    }
  };
  kill('SIGTERM');
  const timer = setTimeout(() => kill('SIGKILL'), 3000);
  await exited;
  clearTimeout(timer);
}
