/**
 * The backend under test: a command line the tester starts (and stops) for every workload run, or a
 * socket some other process listens on. `{socket}` and `{share}` in a command are replaced by the socket
 * path and the shared directory; the command is split into words like a shell would (quotes and
 * backslashes, no expansions) and run without a shell, so the pid is the backend's own.
 *
 * Two names stand for whole commands: `ours` (this package's daemon under this node) and `reference`
 * (the C virtiofsd that QEMU 7.2 ships). The reference serves one connection and exits, which is why
 * a started backend is fresh for every run.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { UsageError } from '../errors.js';
import { packageRoot } from '../package-root.js';

export const REFERENCE_VIRTIOFSD = '/usr/lib/qemu/virtiofsd';

export interface BackendSpec {
  /** what the tables and the JSON call it */
  label: string;
  /** a command template to start, or undefined for a backend already listening on `socket` */
  argv?: string[];
  /** --socket-path: connect here and start nothing */
  socket?: string;
  /** --backend-pid: whose CPU to count for a backend the tester did not start */
  pid?: number;
}

/** Splits a command line into words: '…' and "…" quote, \ escapes; no variables, globs or operators. */
export function splitWords(cmd: string): string[] {
  const out: string[] = [];
  let cur = '';
  let have = false;
  let q: '"' | "'" | undefined;
  for (let i = 0; i < cmd.length; i++) {
    const c = cmd[i]!;
    if (q === "'") {
      if (c === "'") q = undefined;
      else cur += c;
    } else if (q === '"') {
      if (c === '"') q = undefined;
      else if (c === '\\' && i + 1 < cmd.length && '"\\$`'.includes(cmd[i + 1]!)) cur += cmd[++i];
      else cur += c;
    } else if (c === "'" || c === '"') {
      q = c;
      have = true;
    } else if (c === '\\' && i + 1 < cmd.length) {
      cur += cmd[++i];
      have = true;
    } else if (/\s/.test(c)) {
      if (have || cur) out.push(cur);
      cur = '';
      have = false;
    } else {
      cur += c;
    }
  }
  if (q) throw new UsageError(`unterminated ${q} quote in backend command: ${cmd}`);
  if (have || cur) out.push(cur);
  return out;
}

/** `ours`, `reference` or a command with {socket} (and usually {share}). */
export function backendFromCommand(cmd: string): BackendSpec {
  const name = cmd.trim();
  if (name === 'ours') {
    return {
      label: 'ours',
      argv: [process.execPath, path.join(packageRoot(), 'bin', 'virtiofsd-ts.js'), '--socket-path={socket}', '--shared-dir={share}'],
    };
  }
  if (name === 'reference') {
    return { label: 'reference', argv: [REFERENCE_VIRTIOFSD, '--socket-path={socket}', '-o', 'source={share}', '-o', 'cache=auto'] };
  }
  const argv = splitWords(cmd);
  if (argv.length === 0) throw new UsageError('--backend needs a command');
  if (!argv.some((a) => a.includes('{socket}'))) throw new UsageError(`--backend command has no {socket}: ${cmd}`);
  return { label: cmd, argv };
}

/** A started backend, or the pid of one listening elsewhere. */
export interface RunningBackend {
  socket: string;
  /** the pid whose process tree's CPU is counted (for an external backend: --backend-pid, if given) */
  pid: number | undefined;
  /** set once the process exits: a description ("exited with code 1", "killed by SIGKILL") */
  exitReason(): string | undefined;
  /** resolves when the started process exits (never for an external backend) */
  exited: Promise<string>;
  /** the last lines it wrote to stdout/stderr */
  tail(): string;
  /** SIGTERM, then SIGKILL after graceMs; nothing for an external backend */
  stop(graceMs?: number): Promise<void>;
}

/** Starts `spec` (or finds the external one) and resolves once its socket is listening. */
export async function startBackend(spec: BackendSpec, dir: string, share: string, timeoutMs = 15_000): Promise<RunningBackend> {
  if (!spec.argv) {
    // Without --backend-pid the pid is learnt from the connection (SO_PEERCRED) once connected.
    return {
      socket: spec.socket!,
      pid: spec.pid,
      exitReason: () => undefined,
      exited: new Promise<string>(() => {}),
      tail: () => '',
      stop: async () => {},
    };
  }
  const socket = path.join(dir, 'backend.sock');
  fs.rmSync(socket, { force: true });
  const argv = spec.argv.map((a) => a.replaceAll('{socket}', socket).replaceAll('{share}', share));
  let child: ChildProcess;
  try {
    child = spawn(argv[0]!, argv.slice(1), { stdio: ['ignore', 'pipe', 'pipe'] });
  } catch (e) {
    throw new Error(`cannot start backend ${argv[0]}: ${(e as Error).message}`);
  }
  let log = '';
  const keep = (c: Buffer): void => {
    log = (log + c.toString()).slice(-4000);
  };
  child.stdout!.on('data', keep);
  child.stderr!.on('data', keep);
  let reason: string | undefined;
  const exited = new Promise<string>((resolve) => {
    child.on('error', (e) => {
      reason = `could not be started: ${e.message}`;
      resolve(reason);
    });
    child.on('exit', (code, signal) => {
      reason = signal ? `was killed by ${signal}` : `exited with code ${code}`;
      resolve(reason);
    });
  });
  const tail = (): string => log.trimEnd().split('\n').slice(-8).join('\n');
  const deadline = Date.now() + timeoutMs;
  while (!listening(socket)) {
    if (reason) throw new Error(`backend ${reason} before listening${tail() ? `:\n${tail()}` : ''}`);
    if (Date.now() > deadline) {
      child.kill('SIGKILL');
      throw new Error(`backend did not listen on ${socket} within ${timeoutMs / 1000} s${tail() ? `:\n${tail()}` : ''}`);
    }
    await new Promise((r) => setTimeout(r, 20));
  }
  return {
    socket,
    pid: child.pid,
    exitReason: () => reason,
    exited,
    tail,
    stop: async (graceMs = 5000) => {
      if (reason) return;
      child.kill('SIGTERM');
      const t = setTimeout(() => child.kill('SIGKILL'), graceMs);
      await exited;
      clearTimeout(t);
    },
  };
}

function listening(socket: string): boolean {
  try {
    return fs.statSync(socket).isSocket();
  } catch {
    return false;
  }
}
