/**
 * Two things ssh2's server-side SFTP channel does not do that real clients
 * need. Both touch ssh2 internals (`_protocol`, `outgoing`); the integration
 * tests with OpenSSH fail loudly if ssh2 changes them.
 *
 * - ssh2 answers INIT with a VERSION packet that lists no extensions, so
 *   clients never use posix-rename@openssh.com. We rewrite that one packet.
 * - OpenSSH's scp (SFTP mode) exits 1 unless the channel carries an
 *   exit-status before it closes; ssh2's SFTP object has no exit().
 */
import type { SFTPWrapper } from 'ssh2';

const VERSION_PACKET_TYPE = 2;

interface Protocol {
  channelData(id: number, data: Buffer): void;
  exitStatus(id: number, status: number): void;
}

interface Internals {
  _protocol: Protocol;
  outgoing: { id: number; window: number; state: string };
}

export function advertiseExtensions(sftp: SFTPWrapper, extensions: Record<string, string>): void {
  const internals = sftp as unknown as Internals;
  const protocol = internals._protocol;
  if (!protocol || typeof protocol.channelData !== 'function') return;
  const versionPacket = buildVersion(extensions);
  const channelData = (id: number, data: Buffer): void => {
    if (id === internals.outgoing.id && isBareVersion(data)) {
      internals._protocol = protocol;
      internals.outgoing.window -= versionPacket.length - data.length;
      return protocol.channelData(id, versionPacket);
    }
    return protocol.channelData(id, data);
  };
  // Every other member goes to the real protocol object, with `this` bound to it.
  internals._protocol = new Proxy(protocol, {
    get(target, prop) {
      if (prop === 'channelData') return channelData;
      const value: unknown = Reflect.get(target, prop, target);
      return typeof value === 'function' ? value.bind(target) : value;
    },
  });
}

/** Sends exit-status 0 on the SFTP channel, as OpenSSH's sftp-server does before closing. */
export function sendExitStatus(sftp: SFTPWrapper, status = 0): void {
  const internals = sftp as unknown as Internals;
  if (internals.outgoing?.state !== 'open' || typeof internals._protocol?.exitStatus !== 'function') return;
  internals._protocol.exitStatus(internals.outgoing.id, status);
}

function isBareVersion(data: Buffer): boolean {
  return data.length === 9 && data.readUInt32BE(0) === 5 && data[4] === VERSION_PACKET_TYPE;
}

function buildVersion(extensions: Record<string, string>): Buffer {
  const parts: Buffer[] = [Buffer.from([VERSION_PACKET_TYPE, 0, 0, 0, 3])];
  for (const [name, value] of Object.entries(extensions)) parts.push(sshString(name), sshString(value));
  const body = Buffer.concat(parts);
  const len = Buffer.alloc(4);
  len.writeUInt32BE(body.length);
  return Buffer.concat([len, body]);
}

function sshString(s: string): Buffer {
  const bytes = Buffer.from(s, 'utf8');
  const len = Buffer.alloc(4);
  len.writeUInt32BE(bytes.length);
  return Buffer.concat([len, bytes]);
}

/**
 * Keeps bad SFTP input from taking the whole SSH connection down. ssh2's SFTP
 * parser (1.17) throws a TypeError on some malformed packets (a READ whose
 * handle runs past the packet; any data arriving after it reported a fatal
 * protocol error), and the exception travels up through the SSH transport's
 * parser, which ends the connection and every other channel on it. Here it
 * closes this channel only, like any other SFTP protocol error, and data that
 * arrives after a fatal error is ignored.
 */
export function containParserErrors(sftp: SFTPWrapper): void {
  const internals = sftp as unknown as { push?: (data: Buffer | null) => unknown; destroy(): void };
  const push = internals.push;
  if (typeof push !== 'function') return;
  let failed = false;
  sftp.on('error', () => {
    failed = true;
  });
  internals.push = function (this: unknown, data: Buffer | null) {
    if (failed && data !== null) return undefined;
    try {
      return push.call(this, data);
    } catch (err) {
      failed = true;
      const error = Object.assign(new Error(`malformed SFTP packet (${(err as Error)?.message})`), { level: 'sftp-protocol' });
      sftp.emit('error', error);
      internals.destroy();
      return undefined;
    }
  };
}
