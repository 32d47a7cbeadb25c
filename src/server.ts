/**
 * Wires the pieces together. This is the only module that creates concrete
 * classes (S3 client and storage, user sources, SSH server); everything else
 * receives its dependencies.
 */
import type { AddressInfo } from 'node:net';
import type { Logger } from 'pino';
import type { Config } from './config/types.ts';
import type { UserSource } from './users/user.ts';
import { createS3Client, checkBucket } from './storage/s3/client.ts';
import { S3Storage } from './storage/s3/s3-storage.ts';
import { UploadRegistry } from './storage/s3/upload-registry.ts';
import { DirectorySource } from './users/directory-source.ts';
import { EmptySource } from './users/empty-source.ts';
import { loadHostKeys } from './ssh/host-keys.ts';
import { SshServer } from './ssh/server.ts';

/** A start-up failure the operator must fix (exit code 2), as opposed to a crash. */
export class StartupError extends Error {
  override name = 'StartupError';
}

export interface RunningServer {
  ssh: AddressInfo;
  users: UserSource;
  close(): Promise<void>;
}

export async function startServer(config: Config, log: Logger): Promise<RunningServer> {
  const client = createS3Client(config.s3);
  try {
    await checkBucket(client, config.s3.bucket);
  } catch (err) {
    client.destroy();
    throw new StartupError((err as Error).message, { cause: err });
  }
  const users = config.users.directory
    ? await DirectorySource.open({ directory: config.users.directory, defaultBucket: config.s3.bucket, log: log.child({ component: 'users' }) })
    : new EmptySource();
  if (!config.users.directory) log.warn('no user source configured (users.directory is empty): nobody can log in');
  const uploads = new UploadRegistry();
  const ssh = new SshServer({
    hostKeys: await loadHostKeys(config.hostKeys, config.dataDir),
    users,
    setstatMode: config.setstatMode,
    log,
    storageFor: (user) =>
      new S3Storage({
        client,
        bucket: user.s3.bucket,
        keyPrefix: user.s3.keyPrefix,
        config: config.s3,
        renameMode: config.renameMode,
        renameMaxObjects: config.renameMaxObjects,
        uploads,
        log: log.child({ user: user.username, component: 'storage' }),
      }),
  });
  const address = await ssh.listen(config.listen.port, config.listen.host);
  log.info({ address: `${address.address}:${address.port}`, bucket: config.s3.bucket, users: users.all().length }, 's3sftp listening');
  return {
    ssh: address,
    users,
    async close() {
      await ssh.close();
      await users.close();
      client.destroy();
    },
  };
}
