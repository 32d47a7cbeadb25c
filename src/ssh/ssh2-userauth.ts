/**
 * Runtime patch for ssh2's server: accept a repeated "ssh-userauth" service
 * request before authentication, as OpenSSH's sshd does.
 *
 * paramiko (SSHClient.connect with a key and a password) sends a
 * SERVICE_REQUEST for "ssh-userauth" before each authentication method; ssh2
 * 1.17.0 (lib/server.js, the SERVICE_REQUEST message handler in the
 * IncomingClient constructor) disconnects on the second one with
 * SERVICE_NOT_AVAILABLE, so the password is never tried. RFC 4253 section 10
 * does not forbid a repeated request, and sshd answers each with
 * SERVICE_ACCEPT.
 *
 * The handler is a closure in ssh2's constructor; we wrap it on the
 * connection's protocol object (`_protocol._handlers`), which is private API:
 * the patch is pinned to the exact ssh2 version below and does nothing (and
 * says so) on any other.
 */
import { createRequire } from 'node:module';
import type { Connection } from 'ssh2';

/** The ssh2 version whose internals this patch was written against. */
export const PATCHED_SSH2_VERSION = '1.17.0';

const installed = (createRequire(import.meta.url)('ssh2/package.json') as { version: string }).version;

/** True when the installed ssh2 is the one the patch fits. */
export const userauthPatchApplies = installed === PATCHED_SSH2_VERSION;

/** The installed ssh2 version, for the warning when the patch does not apply. */
export const installedSsh2Version = installed;

interface ProtocolInternals {
  _handlers?: { SERVICE_REQUEST?: (p: unknown, service: string) => void };
  serviceAccept?: (service: string) => void;
}

/**
 * Makes this connection accept repeated "ssh-userauth" service requests until it has
 * authenticated. Call from the server's 'connection' listener (before any SERVICE_REQUEST
 * can arrive). Returns false when ssh2 is not the pinned version or its internals moved.
 */
export function acceptRepeatedUserauth(client: Connection): boolean {
  if (!userauthPatchApplies) return false;
  const internals = client as unknown as { _protocol?: ProtocolInternals; authenticated?: boolean };
  const proto = internals._protocol;
  const handlers = proto?._handlers;
  const original = handlers?.SERVICE_REQUEST;
  if (!proto || !handlers || typeof original !== 'function' || typeof proto.serviceAccept !== 'function') return false;
  let accepted = false;
  handlers.SERVICE_REQUEST = (p, service) => {
    if (accepted && service === 'ssh-userauth' && internals.authenticated === false) {
      proto.serviceAccept?.call(proto, service);
      return;
    }
    // The first request goes through ssh2's own checks (key exchange done, right service).
    accepted = service === 'ssh-userauth' && internals.authenticated === false;
    original(p, service);
  };
  return true;
}
