/**
 * A bigger receive window for SFTP channels: a runtime patch of ssh2, pinned to the version it was
 * written against.
 *
 * ssh2 (1.17.0) opens every channel with a 2 MiB receive window and tops it back up to 2 MiB once
 * it falls to 1 MiB (lib/Channel.js MAX_WINDOW / WINDOW_THRESHOLD, constants with no option). OpenSSH's
 * sftp client keeps 64 WRITEs of 32 KiB in flight: 2 MiB of data plus the SFTP headers, a little
 * more than the window, so an upload runs window-bound — the client stalls until a WINDOW_ADJUST
 * comes back for data the server has already taken. Measured with bench/ssh-probe.cjs (a bare ssh2
 * server writing to local disk, OpenSSH sftp put of 256 MiB, alternated rounds on this machine):
 * 2 MiB → median ~45 MB/s, 8 MiB → ~80 MB/s (docs/performance.md).
 *
 * The patch wraps the channel's own push() (where ssh2 hands it the data of each CHANNEL_DATA) and
 * sends the WINDOW_ADJUST that keeps the window near `size`; ssh2's own check afterwards then finds
 * the window above its threshold and does nothing. It changes no flow control for memory: ssh2's
 * SFTP channel already adjusts the window as soon as data is parsed, whatever the session does with
 * it; what bounds buffered WRITE data is the client's request limit and the session's replies.
 *
 * It touches ssh2 internals (`incoming`, `outgoing`, `_protocol.channelWindowAdjust`, `push`), so it
 * applies only to the exact version below and logs once otherwise; test/unit/ssh2-window.test.ts
 * fails if the wider window stops reaching the client.
 */
import { createRequire } from 'node:module';
import type { Logger } from 'pino';

/** The ssh2 version whose internals this patch was checked against (package.json "version"). */
export const PATCHED_SSH2_VERSION = '1.17.0';
/** ssh2's own window, for comparison. */
export const SSH2_DEFAULT_WINDOW = 2 * 1024 * 1024;
/** The receive window we keep on SFTP channels. */
export const SFTP_RECEIVE_WINDOW = 8 * 1024 * 1024;

interface ChannelInternals {
  incoming?: { window: number; state?: string };
  outgoing?: { id: number; state?: string };
  _protocol?: { channelWindowAdjust?(id: number, amount: number): void };
  push?(data: Buffer | null): unknown;
}

let installedVersion: string | undefined;
function ssh2Version(): string {
  installedVersion ??= (createRequire(import.meta.url)('ssh2/package.json') as { version: string }).version;
  return installedVersion;
}

let warned = false;

/**
 * Holds the window closed while `held()` is true (flow control for memory, sftp/flow-control.ts):
 * no WINDOW_ADJUST goes out, and ssh2's own top-up is skipped (push answers false, which ssh2 reads
 * as "stop"). The client can still send what is left of the window, then it waits. `onRelease`
 * registers the function that reopens it.
 */
export interface WindowGate {
  held(): boolean;
  onRelease(reopen: () => void): void;
}

/**
 * Keeps `channel`'s receive window at `size` bytes. Call right after accepting the channel, before
 * any data can arrive. Returns false (and logs once) when it did not apply: another ssh2 version, or
 * internals that are not what it expects.
 */
export function widenReceiveWindow(channel: unknown, log?: Logger, size = SFTP_RECEIVE_WINDOW, gate?: WindowGate): boolean {
  const c = channel as ChannelInternals;
  const version = ssh2Version();
  const shapeOk =
    typeof c.push === 'function' &&
    typeof c.incoming?.window === 'number' &&
    typeof c.outgoing?.id === 'number' &&
    typeof c._protocol?.channelWindowAdjust === 'function';
  if (version !== PATCHED_SSH2_VERSION || !shapeOk) {
    if (!warned) {
      warned = true;
      log?.warn(
        { ssh2: version, patchedFor: PATCHED_SSH2_VERSION, shapeOk },
        'ssh2 is not the version the receive-window patch was written for: SFTP uploads keep ssh2\'s 2 MiB window (slower); re-check src/ssh/ssh2-window.ts',
      );
    }
    return false;
  }
  const incoming = c.incoming!;
  const outgoing = c.outgoing!;
  const topUp = () => {
    const amount = size - incoming.window;
    if (amount <= 0 || outgoing.state === 'closed' || incoming.state === 'closed') return;
    incoming.window += amount;
    c._protocol!.channelWindowAdjust!(outgoing.id, amount);
  };
  const push = c.push!;
  c.push = function (this: unknown, data: Buffer | null) {
    const result = push.call(this, data);
    // Parsing may have queued enough to hold the window: ssh2 must not top it up either.
    if (data !== null && gate?.held()) return false;
    // Half the window, as ssh2 and OpenSSH do: one adjust per `size / 2` bytes received.
    if (data !== null && incoming.window <= size / 2) topUp();
    return result;
  };
  gate?.onRelease(() => {
    // ssh2 marks a channel whose push answered false; SFTP channels never read the mark.
    (c as { _waitChanDrain?: boolean })._waitChanDrain = false;
    if (incoming.window <= size / 2) topUp();
  });
  topUp();
  return true;
}
