/**
 * ssh2 answers the client's INIT with a VERSION packet that lists no
 * extensions, so clients never use posix-rename@openssh.com (and OpenSSH's
 * `rename` could not overwrite). We rewrite that one packet on its way out to
 * add our extensions. This touches ssh2 internals (`_protocol.channelData`,
 * `outgoing.window`); the integration tests fail loudly if ssh2 changes them.
 */
import type { SFTPWrapper } from 'ssh2';

const VERSION_PACKET_TYPE = 2;

interface Internals {
  _protocol: { channelData(id: number, data: Buffer): void };
  outgoing: { id: number; window: number };
}

export function advertiseExtensions(sftp: SFTPWrapper, extensions: Record<string, string>): void {
  const internals = sftp as unknown as Internals;
  const protocol = internals._protocol;
  if (!protocol || typeof protocol.channelData !== 'function') return;
  const versionPacket = buildVersion(extensions);
  let sent = false;
  const wrapper = Object.create(protocol) as Internals['_protocol'];
  wrapper.channelData = (id: number, data: Buffer) => {
    if (!sent && id === internals.outgoing.id && isBareVersion(data)) {
      sent = true;
      internals.outgoing.window -= versionPacket.length - data.length;
      return protocol.channelData.call(protocol, id, versionPacket);
    }
    return protocol.channelData.call(protocol, id, data);
  };
  internals._protocol = wrapper;
}

function isBareVersion(data: Buffer): boolean {
  return data.length === 9 && data.readUInt32BE(0) === 5 && data[4] === VERSION_PACKET_TYPE;
}

function buildVersion(extensions: Record<string, string>): Buffer {
  const parts: Buffer[] = [Buffer.from([VERSION_PACKET_TYPE, 0, 0, 0, 3])];
  for (const [name, value] of Object.entries(extensions)) {
    parts.push(sshString(name), sshString(value));
  }
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
