/**
 * `s3sftp hash-password [--bcrypt]`: prints a hash for an SftpUser's
 * spec.passwordHash. From a pipe it reads all of stdin; at a terminal it
 * prompts twice with echo off, so the password never shows on screen or in
 * shell history.
 */

import type { ReadStream } from 'node:tty';
import { StringDecoder } from 'node:string_decoder';
import { hashPassword, PasswordHashError, type PasswordAlgorithm } from '../auth/password.ts';

const USAGE = `usage: s3sftp hash-password [--bcrypt | --argon2id]
  Reads a password from stdin (one trailing newline is removed) and prints its hash.
  --argon2id  argon2id hash (default)
  --bcrypt    bcrypt hash, for tools that only understand bcrypt
`;

async function readAll(stream: NodeJS.ReadableStream): Promise<string> {
  const chunks: Buffer[] = [];
  for await (const chunk of stream) chunks.push(typeof chunk === 'string' ? Buffer.from(chunk) : chunk);
  return Buffer.concat(chunks).toString('utf8');
}

/** Reads one line from a terminal in raw mode without echoing it; undefined on Ctrl-C. */
function promptHidden(tty: ReadStream, out: NodeJS.WritableStream, prompt: string): Promise<string | undefined> {
  return new Promise((resolve) => {
    const decoder = new StringDecoder('utf8');
    let line = '';
    const done = (value: string | undefined) => {
      tty.off('data', onData);
      tty.setRawMode(false);
      tty.pause();
      out.write('\n');
      resolve(value);
    };
    const onData = (chunk: Buffer | string) => {
      const text = typeof chunk === 'string' ? chunk : decoder.write(chunk);
      for (const ch of text) {
        if (ch === '\r' || ch === '\n' || ch === '\u0004') return done(line); // Enter or Ctrl-D
        if (ch === '\u0003') return done(undefined); // Ctrl-C
        if (ch === '\u007f' || ch === '\b') line = [...line].slice(0, -1).join('');
        else if (ch >= ' ') line += ch;
      }
    };
    out.write(prompt);
    tty.setRawMode(true);
    tty.on('data', onData);
    tty.resume();
  });
}

/**
 * Runs the hash-password subcommand; returns the exit code (0 ok, 1 refused
 * password, 2 bad arguments, 130 interrupted). Errors go to `stderr`.
 */
export async function hashPasswordCommand(
  stdin: NodeJS.ReadableStream,
  stdout: NodeJS.WritableStream,
  args: string[],
  stderr: NodeJS.WritableStream = process.stderr,
): Promise<number> {
  let algo: PasswordAlgorithm = 'argon2id';
  for (const arg of args) {
    if (arg === '--bcrypt') algo = 'bcrypt';
    else if (arg === '--argon2id') algo = 'argon2id';
    else if (arg === '-h' || arg === '--help') {
      stdout.write(USAGE);
      return 0;
    } else {
      stderr.write(`hash-password: unknown argument "${arg}"\n${USAGE}`);
      return 2;
    }
  }

  let password: string;
  const tty = stdin as Partial<ReadStream>;
  if (tty.isTTY && typeof tty.setRawMode === 'function') {
    const first = await promptHidden(stdin as ReadStream, stderr, 'Password: ');
    if (first === undefined) return 130;
    if (first !== '') {
      const again = await promptHidden(stdin as ReadStream, stderr, 'Repeat password: ');
      if (again === undefined) return 130;
      if (again !== first) {
        stderr.write('hash-password: the passwords do not match\n');
        return 1;
      }
    }
    password = first;
  } else {
    // Only one newline: `echo pw | ...` adds it, but the rest of the bytes are the password.
    password = (await readAll(stdin)).replace(/\r?\n$/, '');
  }

  if (password === '') {
    stderr.write('hash-password: refusing an empty password\n');
    return 1;
  }
  try {
    stdout.write(`${await hashPassword(password, algo)}\n`);
    return 0;
  } catch (err) {
    if (err instanceof PasswordHashError) {
      stderr.write(`hash-password: ${err.message}\n`);
      return 1;
    }
    throw err;
  }
}
