/**
 * A minimal ssh2 SFTP server writing uploads to local disk (or discarding them), for measuring the
 * SSH receive path alone, without S3 and without s3sftp's code. Plain CommonJS so that the same file
 * runs on Node 20 (/usr/bin/node) and Node 24, to compare them.
 *
 *   node bench/ssh-probe.cjs            → prints the port; serves until killed
 *   PROBE_SINK=null                     → WRITE is answered without touching the disk
 *   PROBE_NO_BINDING=1                  → ssh2's native crypto binding is not loaded (JS/OpenSSL ciphers)
 *   PROBE_NODELAY=1                     → TCP_NODELAY on the connection (small WRITE replies not held by Nagle)
 *   PROBE_WINDOW=8388608                → keep the SFTP channel's receive window at this size (ssh2: 2 MiB)
 */
'use strict';
const Module = require('module');
if (process.env.PROBE_NO_BINDING) {
  const load = Module._load;
  Module._load = function (request, ...rest) {
    if (request.endsWith('sshcrypto.node')) throw new Error('binding disabled');
    return load.call(this, request, ...rest);
  };
}
const path = require('path');
const fs = require('fs');
const ssh2 = require(path.join(__dirname, '..', 'node_modules', 'ssh2'));
const { STATUS_CODE } = ssh2.utils.sftp;

const dir = process.env.PROBE_DIR || fs.mkdtempSync('/tmp/ssh-probe-');
const sink = process.env.PROBE_SINK || 'disk';
const hostKey = ssh2.utils.generateKeyPairSync('ed25519').private;
const windowTarget = Number(process.env.PROBE_WINDOW || 0);

/** The same idea as src/ssh/ssh2-window.ts, inline so that Node 20 can run it: a bigger receive window. */
function widenWindow(chan, target) {
  const top = () => {
    const amt = target - chan.incoming.window;
    if (amt <= 0 || chan.outgoing.state !== 'open') return;
    chan.incoming.window += amt;
    chan._protocol.channelWindowAdjust(chan.outgoing.id, amt);
  };
  const push = chan.push;
  chan.push = function (data) {
    const r = push.call(this, data);
    if (data !== null && chan.incoming.window <= target / 2) top();
    return r;
  };
  top();
}

const server = new ssh2.Server({ hostKeys: [hostKey] }, (client) => {
  if (process.env.PROBE_NODELAY) client.setNoDelay(true);
  client.on('authentication', (ctx) => ctx.accept());
  client.on('error', () => {});
  client.on('ready', () => {
    client.on('session', (accept) => {
      const session = accept();
      session.on('sftp', (acceptSftp) => {
        const sftp = acceptSftp();
        if (windowTarget) widenWindow(sftp, windowTarget);
        const handles = new Map();
        let next = 0;
        const handleOf = (buf) => handles.get(buf.readUInt32BE(0));
        sftp.on('REALPATH', (id) => sftp.name(id, [{ filename: '/', longname: '/', attrs: {} }]));
        const stat = (id, p) => {
          fs.stat(path.join(dir, path.basename(p)), (err, st) => {
            if (err) return sftp.status(id, STATUS_CODE.NO_SUCH_FILE);
            sftp.attrs(id, { mode: st.mode, size: st.size, uid: 0, gid: 0, atime: 0, mtime: 0 });
          });
        };
        sftp.on('STAT', stat);
        sftp.on('LSTAT', stat);
        sftp.on('FSTAT', (id, h) => {
          const e = handleOf(h);
          if (!e) return sftp.status(id, STATUS_CODE.FAILURE);
          fs.fstat(e.fd, (err, st) => (err ? sftp.status(id, STATUS_CODE.FAILURE) : sftp.attrs(id, { mode: st.mode, size: st.size, uid: 0, gid: 0, atime: 0, mtime: 0 })));
        });
        sftp.on('OPEN', (id, filename, flags) => {
          const mode = flags & ssh2.utils.sftp.OPEN_MODE.WRITE ? 'w' : 'r';
          fs.open(path.join(dir, path.basename(filename)), mode, (err, fd) => {
            if (err) return sftp.status(id, STATUS_CODE.NO_SUCH_FILE);
            const h = Buffer.alloc(4);
            h.writeUInt32BE(++next);
            handles.set(next, { fd });
            sftp.handle(id, h);
          });
        });
        sftp.on('WRITE', (id, h, offset, data) => {
          const e = handleOf(h);
          if (!e) return sftp.status(id, STATUS_CODE.FAILURE);
          if (sink === 'null') return sftp.status(id, STATUS_CODE.OK);
          fs.write(e.fd, data, 0, data.length, offset, (err) => sftp.status(id, err ? STATUS_CODE.FAILURE : STATUS_CODE.OK));
        });
        sftp.on('READ', (id, h, offset, len) => {
          const e = handleOf(h);
          if (!e) return sftp.status(id, STATUS_CODE.FAILURE);
          const buf = Buffer.allocUnsafe(len);
          fs.read(e.fd, buf, 0, len, offset, (err, n) => {
            if (err) return sftp.status(id, STATUS_CODE.FAILURE);
            if (n === 0) return sftp.status(id, STATUS_CODE.EOF);
            sftp.data(id, buf.subarray(0, n));
          });
        });
        sftp.on('SETSTAT', (id) => sftp.status(id, STATUS_CODE.OK));
        sftp.on('FSETSTAT', (id) => sftp.status(id, STATUS_CODE.OK));
        sftp.on('CLOSE', (id, h) => {
          const e = handleOf(h);
          if (!e) return sftp.status(id, STATUS_CODE.FAILURE);
          handles.delete(h.readUInt32BE(0));
          fs.close(e.fd, () => sftp.status(id, STATUS_CODE.OK));
        });
        sftp.on('end', () => sftp.end());
      });
    });
  });
});
server.listen(Number(process.env.PROBE_PORT || 0), '127.0.0.1', () => {
  process.stdout.write(`${server.address().port} ${dir}\n`);
});
module.exports = { server };
