/** The one root logger: pino JSON on stdout, with secrets redacted wherever they appear. */
import { pino, type DestinationStream, type Logger } from 'pino';

/**
 * Fields that must never reach a log line, at any depth a caller is likely
 * to log them: the config object (`{ config }`, `{ s3 }`, `{ credentials }`),
 * an ssh2 authentication context (`{ ctx }`: password, key blob, signature),
 * a user (`passwordHash`), HTTP headers of an SDK error, and tokens
 * (Kubernetes service-account, web identity).
 */
export const REDACT_PATHS: readonly string[] = [
  'password',
  '*.password',
  'passwordHash',
  '*.passwordHash',
  'secretAccessKey',
  '*.secretAccessKey',
  '*.*.secretAccessKey',
  '*.*.*.secretAccessKey',
  'sessionToken',
  '*.sessionToken',
  '*.*.sessionToken',
  '*.*.*.sessionToken',
  'token',
  '*.token',
  'privateKey',
  '*.privateKey',
  'signature',
  '*.signature',
  'ctx.blob',
  'ctx.key',
  'authorization',
  '*.authorization',
  '*.headers.authorization',
  '*.*.headers.authorization',
  'headers["x-amz-security-token"]',
  '*.headers["x-amz-security-token"]',
  '*.*.headers["x-amz-security-token"]',
];

/** The server's root logger at `level`; `destination` defaults to stdout. */
export function createLogger(level: string, destination?: DestinationStream): Logger {
  const options = { level, redact: { paths: [...REDACT_PATHS], censor: '[redacted]' } };
  return destination ? pino(options, destination) : pino(options);
}
