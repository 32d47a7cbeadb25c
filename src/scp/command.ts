/**
 * The command line of an SSH `exec` request, read the way a legacy SCP client
 * means it: `scp -t [-r] [-p] [-d] [-v] [-q] [--] PATH` (the client uploads)
 * or `scp -f [...] PATH...` (the client downloads).
 *
 * We offer no shell, yet clients send the line a remote shell would have run,
 * so it is split like a POSIX shell splits words (quotes, backslashes, a
 * leading `~`). Nothing is expanded: no globbing, no variables, no command
 * substitution. Unquoted shell operators (`;`, `|`, `&`, `>`, `$(`...) are
 * refused rather than taken literally, since the client meant something we do
 * not do.
 */

/** A parsed scp command. Paths are raw client paths, not yet normalised. */
export interface ScpCommand {
  /** sink: `-t`, the client sends files to us; source: `-f`, we send files to it. */
  mode: 'sink' | 'source';
  /** -r: directories are copied with their contents. */
  recursive: boolean;
  /** -p: modification times travel in T records. */
  preserveTimes: boolean;
  /** -d: the sink target must be a directory. */
  targetIsDirectory: boolean;
  /** sink: exactly one target; source: one or more paths. */
  paths: string[];
}

/** Why an exec command is refused; `message` is meant for the client's stderr. */
export class ScpCommandError extends Error {
  override name = 'ScpCommandError';
}

/** Flags the remote end of OpenSSH's scp accepts that mean something to us. */
const FLAGS = new Set(['t', 'f', 'r', 'p', 'd', 'v', 'q']);
/** Characters a shell treats as operators; unquoted, they mean the client expected a shell. */
const SHELL_OPERATORS = new Set([';', '&', '|', '<', '>', '(', ')', '`', '$']);
/** Longest command line accepted; scp clients send one path or a few. */
const MAX_COMMAND_BYTES = 64 * 1024;
/** Marks a word that began with an unquoted `~` (home), resolved after splitting. */
const HOME = '\u0000~';

/**
 * Parses an exec command as an scp invocation. Throws ScpCommandError with a
 * message for the client when it is anything else.
 */
export function parseScpCommand(command: string): ScpCommand {
  if (Buffer.byteLength(command) > MAX_COMMAND_BYTES) throw new ScpCommandError('command line too long');
  if (command.includes('\0')) throw new ScpCommandError('command line contains a NUL byte');
  // Anything that does not start with scp is refused as such, even when it is not valid shell.
  if (!/^\s*(?:\S*\/)?scp(?:\s|$)/.test(command)) throw new ScpCommandError(notAllowed(command));
  const words = splitWords(command);

  let sink = false;
  let source = false;
  const result: ScpCommand = { mode: 'sink', recursive: false, preserveTimes: false, targetIsDirectory: false, paths: [] };
  let i = 1;
  for (; i < words.length; i++) {
    const word = words[i] as string;
    if (word === '--') {
      i++;
      break;
    }
    if (!word.startsWith('-') || word === '-') break;
    for (const flag of word.slice(1)) {
      if (!FLAGS.has(flag)) throw new ScpCommandError(`scp: option -${flag} is not supported by this server (supported: -t -f -r -p -d -v -q)`);
      if (flag === 't') sink = true;
      else if (flag === 'f') source = true;
      else if (flag === 'r') result.recursive = true;
      else if (flag === 'p') result.preserveTimes = true;
      else if (flag === 'd') result.targetIsDirectory = true;
      // -v and -q change nothing here: we print no progress and no debug output.
    }
  }
  if (sink && source) throw new ScpCommandError('scp: -t and -f cannot be used together');
  if (!sink && !source) {
    throw new ScpCommandError('scp: this server only runs scp as the remote end of a copy (-t or -f); interactive use is not available');
  }
  result.mode = sink ? 'sink' : 'source';
  result.paths = words.slice(i).map(resolveHome);
  if (result.paths.length === 0) throw new ScpCommandError('scp: no path given');
  if (sink && result.paths.length > 1) throw new ScpCommandError('scp: ambiguous target (more than one path after -t)');
  return result;
}

function notAllowed(command: string): string {
  const shown = command.length > 80 ? `${command.slice(0, 80)}...` : command;
  return `this server offers SFTP and SCP only; no shell and no other commands (refused: ${JSON.stringify(shown)})`;
}

/** `~` and `~/x` name the user's home, which is the root of their storage. */
export function resolveHome(word: string): string {
  if (!word.startsWith(HOME)) return word;
  const rest = word.slice(HOME.length);
  return rest === '' ? '/' : rest;
}

/**
 * Splits a command line into words like a POSIX shell, without expanding
 * anything. An unquoted `~` that starts a word and is followed by `/` or the
 * end of the word is kept as the HOME marker.
 */
export function splitWords(line: string): string[] {
  const words: string[] = [];
  let word = '';
  let inWord = false;
  let i = 0;
  const n = line.length;
  while (i < n) {
    const c = line[i] as string;
    if (c === ' ' || c === '\t' || c === '\n') {
      if (inWord) words.push(word);
      word = '';
      inWord = false;
      i++;
      continue;
    }
    if (c === "'") {
      const end = line.indexOf("'", i + 1);
      if (end < 0) throw new ScpCommandError('unterminated single quote in command line');
      word += line.slice(i + 1, end);
      inWord = true;
      i = end + 1;
      continue;
    }
    if (c === '"') {
      i++;
      inWord = true;
      for (;;) {
        if (i >= n) throw new ScpCommandError('unterminated double quote in command line');
        const d = line[i] as string;
        if (d === '"') {
          i++;
          break;
        }
        if (d === '$' || d === '`') throw new ScpCommandError('shell expansion ($, `) is not supported; this server runs no shell');
        if (d === '\\' && i + 1 < n && '"\\$`\n'.includes(line[i + 1] as string)) {
          if (line[i + 1] !== '\n') word += line[i + 1];
          i += 2;
          continue;
        }
        word += d;
        i++;
      }
      continue;
    }
    if (c === '\\') {
      if (i + 1 >= n) throw new ScpCommandError('command line ends with a backslash');
      if (line[i + 1] !== '\n') word += line[i + 1];
      inWord = true;
      i += 2;
      continue;
    }
    if (SHELL_OPERATORS.has(c)) {
      throw new ScpCommandError(`shell syntax (${JSON.stringify(c)}) is not supported; this server runs no shell`);
    }
    if (c === '#' && !inWord) throw new ScpCommandError('shell comments are not supported; this server runs no shell');
    if (c === '~' && !inWord && (i + 1 >= n || ' \t\n/'.includes(line[i + 1] as string))) {
      word = HOME;
      inWord = true;
      i++;
      continue;
    }
    word += c;
    inWord = true;
    i++;
  }
  if (inWord) words.push(word);
  return words;
}
