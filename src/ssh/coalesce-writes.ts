/**
 * One socket write per burst of SSH packets instead of one per packet.
 *
 * ssh2 writes every encrypted packet to the socket on its own. A download answers OpenSSH's 32 KiB
 * READs with SFTP DATA messages 13 bytes larger than the client's 32 KiB channel packet limit, so
 * each READ becomes two SSH packets and two write(2) calls, and the replies to a whole chunk of S3
 * data are sent in one go. Corking the socket at the first write of a tick and uncorking it on the
 * next tick hands the kernel the burst as one writev: the same bytes, far fewer system calls and
 * TCP segments. Nothing waits longer than the current tick.
 */
import type { Socket } from 'node:net';

/** Makes writes issued in one tick of the event loop go out as a single writev. */
export function coalesceWrites(socket: Socket): void {
  const write = socket.write;
  let corked = false;
  const flush = (): void => {
    corked = false;
    socket.uncork();
  };
  socket.write = function (this: Socket, ...args: Parameters<Socket['write']>): boolean {
    if (!corked && !socket.destroyed) {
      corked = true;
      socket.cork();
      process.nextTick(flush);
    }
    return write.apply(this, args);
  } as Socket['write'];
}
