/**
 * Runs once per `node --test` run: one Swift S3 server shared by every test
 * file (each file uses its own bucket), instead of a 7-second start per file.
 * Test files find it through S3SFTP_TEST_S3; run alone, they start their own.
 */
import { startSwift, type SwiftS3 } from '../../dev/swift.ts';

let swift: SwiftS3 | undefined;

export async function globalSetup(): Promise<void> {
  swift = await startSwift();
  const { endpoint, region, accessKeyId, secretAccessKey } = swift;
  process.env.S3SFTP_TEST_S3 = JSON.stringify({ endpoint, region, accessKeyId, secretAccessKey });
}

export async function globalTeardown(): Promise<void> {
  await swift?.stop();
}
