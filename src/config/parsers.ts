/**
 * Parsers of configuration values. Each takes a raw value from YAML (any type) or from env (always
 * a string) and returns the value or an error phrased to follow the value:
 * `<key>: "<value>" <error>`. Checks shared with SftpUser resources live in validators.ts.
 */
import { isIPv6 } from 'node:net';
import { formatSize, parseDuration, parseSize } from './units.ts';
import { parseCidr } from '../ssh/cidr.ts';

/** A parsed value, or an error phrased to follow the value: `<key>: "<value>" <error>`. */
export type Parsed = { value: unknown } | { error: string };

export function str(check?: (s: string) => string | undefined): (raw: unknown) => Parsed {
  return (raw) => {
    if (typeof raw !== 'string') return { error: 'must be a string' };
    const problem = check?.(raw);
    return problem ? { error: problem } : { value: raw };
  };
}

export function int(min: number, max: number): (raw: unknown) => Parsed {
  return (raw) => {
    const n = typeof raw === 'string' && /^\s*-?\d+\s*$/.test(raw) ? Number(raw) : raw;
    if (typeof n !== 'number' || !Number.isSafeInteger(n)) {
      const range = max === Number.MAX_SAFE_INTEGER ? `of at least ${min}` : `from ${min} to ${max}`;
      return { error: `is not a whole number; use an integer ${range}` };
    }
    if (n < min) return { error: `is too small; use at least ${min}` };
    if (n > max) return { error: `is too big; use at most ${max}` };
    return { value: n };
  };
}

/** One of a fixed set of values; `labels` explain numeric modes in the message. */
export function choice(values: readonly (string | number)[], labels?: readonly string[]): (raw: unknown) => Parsed {
  const allowed = values.map((v, i) => {
    const shown = v === '' ? '"" (empty)' : String(v);
    return labels?.[i] ? `${shown} (${labels[i]})` : shown;
  });
  const list = allowed.length > 1 ? `${allowed.slice(0, -1).join(', ')} or ${allowed.at(-1)}` : (allowed[0] ?? '');
  return (raw) => {
    for (const v of values) {
      if (raw === v || (typeof v === 'number' && typeof raw === 'string' && raw.trim() === String(v))) {
        return { value: v };
      }
    }
    return { error: `is not allowed; use ${list}` };
  };
}

export function bool(raw: unknown): Parsed {
  if (typeof raw === 'boolean') return { value: raw };
  if (typeof raw === 'string') {
    const s = raw.trim().toLowerCase();
    if (['true', '1', 'yes', 'on'].includes(s)) return { value: true };
    if (['false', '0', 'no', 'off'].includes(s)) return { value: false };
  }
  return { error: 'is not a boolean; use true or false' };
}

export function size(min: number, minWhy: string, max?: number, maxWhy?: string): (raw: unknown) => Parsed {
  return (raw) => {
    const r = parseSize(raw);
    if ('error' in r) return r;
    if (r.value < min) return { error: `is too small; use at least ${formatSize(min)} (${minWhy})` };
    if (max !== undefined && r.value > max) {
      return { error: `is too big; use at most ${formatSize(max)} (${maxWhy})` };
    }
    return r;
  };
}

/** A list of non-empty strings; env (and a plain YAML string) give it comma-separated. */
export function stringList(raw: unknown): Parsed {
  const items = typeof raw === 'string' ? raw.split(',').map((s) => s.trim()).filter((s) => s !== '') : raw;
  if (!Array.isArray(items)) return { error: 'must be a list of strings (comma-separated in env)' };
  for (const [i, item] of items.entries()) {
    if (typeof item !== 'string' || item.trim() === '') {
      return { error: `has an invalid entry at index ${i}; every entry must be a non-empty string` };
    }
  }
  return { value: items.map((s: string) => s.trim()) };
}

/** A list of IPv4 or IPv6 CIDRs (or bare addresses), as net.BlockList takes them. */
export function cidrList(raw: unknown): Parsed {
  const list = stringList(raw);
  if ('error' in list) return list;
  for (const item of list.value as string[]) {
    if (parseCidr(item) === undefined) return { error: `has "${item}", which is not an address or CIDR; use e.g. 10.0.0.0/8 or 2001:db8::/32` };
  }
  return list;
}

const LISTEN_HINT = 'use host:port, e.g. 0.0.0.0:2022 or [::1]:2022';

export function listen(raw: unknown): Parsed {
  if (typeof raw === 'number') return { error: `is only a port; ${LISTEN_HINT}` };
  if (typeof raw !== 'string') return { error: `must be a string; ${LISTEN_HINT}` };
  const text = raw.trim();
  let host: string;
  let port: string;
  const bracketed = /^\[([^\]]*)\]:(.*)$/.exec(text);
  if (bracketed) {
    host = bracketed[1] ?? '';
    port = bracketed[2] ?? '';
    if (!isIPv6(host)) return { error: `has an invalid IPv6 address in brackets; ${LISTEN_HINT}` };
  } else {
    const colon = text.lastIndexOf(':');
    if (colon < 0) return { error: `has no port; ${LISTEN_HINT}` };
    host = text.slice(0, colon);
    port = text.slice(colon + 1);
    if (host.includes(':')) return { error: `has an IPv6 address without brackets; write it as [${host}]:${port}` };
    if (host === '') return { error: `has no host; use 0.0.0.0:${port || 2022} to listen on every interface` };
    if (!/^[A-Za-z0-9.-]+$/.test(host)) return { error: `has an invalid host; ${LISTEN_HINT}` };
  }
  if (!/^\d{1,5}$/.test(port) || Number(port) > 65535) {
    return { error: 'has an invalid port; use a port from 0 to 65535 (0 picks a free one)' };
  }
  return { value: { host, port: Number(port) } };
}

/** Allows "" (meaning `emptyMeans`) besides what `check` accepts. */
export function orEmpty(check: (s: string) => string | undefined, emptyMeans: string): (s: string) => string | undefined {
  return (s) => {
    if (s === '') return undefined;
    const problem = check(s);
    return problem && `${problem}, or "" for ${emptyMeans}`;
  };
}

/** 0 (off), or old enough that no upload still running on another replica can be mistaken for abandoned. */
export function abandonedUploadAge(raw: unknown): Parsed {
  const r = parseDuration(raw);
  if ('error' in r || r.value === 0 || r.value >= 3_600_000) return r;
  return { error: 'is too small; use at least 1h (uploads still running would be aborted), or 0s to turn the clean-up off' };
}

/** A Kubernetes namespace name (DNS label), or "" for the documented fallback. */
export function namespaceName(s: string): string | undefined {
  if (s === '' || (s.length <= 63 && /^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/.test(s))) return undefined;
  return 'is not a namespace name; use lower-case letters, digits and "-" (at most 63), or "" for the default';
}

/** STS accepts 15 minutes to 12 hours. */
export function roleDuration(raw: unknown): Parsed {
  const r = parseDuration(raw);
  if ('error' in r) return r;
  if (r.value < 15 * 60_000) return { error: 'is too short; STS issues credentials for at least 15m' };
  if (r.value > 12 * 3_600_000) return { error: 'is too long; STS issues credentials for at most 12h' };
  if (r.value % 1000 !== 0) return { error: 'is not a whole number of seconds' };
  return r;
}

export const nonEmpty = (what: string) => (s: string) => (s.trim() === '' ? `must not be empty; ${what}` : undefined);
