/**
 * A child process for test/unit/seccomp.test.ts: `node seccomp-child.js MODE ACTION` installs the
 * --seccomp filter (installSeccomp, the daemon's own call) and then does ACTION:
 *   work       a worker thread started after the install: it loads the addon again, compiles the AS
 *              module on a shared memory of its own (a new isolate's JIT) and reads a file with the
 *              addon and with fs; here fs.readFileSync and an addon pread, isatty, a timer, exit 0
 *   forbidden  os.getPriority(): getpriority(2), which the list leaves out; prints "survived" if it ran
 *   threads    prints "<tid> <Seccomp: field> <name>" of every thread; the threads were started before
 *              the install (a worker, libuv's threadpool, V8's), so TSYNC must have reached them
 *   twice      installs once more: prints the error
 * Lines go to stdout; the exit code or signal says the rest.
 */
import fs from 'node:fs';
import os from 'node:os';
import tty from 'node:tty';
import { Worker, isMainThread, parentPort } from 'node:worker_threads';
import { Logger } from '../../src/log.js';
import { C, native } from '../../src/native.js';
import { type SeccompMode, installSeccomp } from '../../src/sandbox/seccomp.js';
import { createSharedMemory, loadVirtqueueModule } from '../../src/virtio/wasm.js';

const HERE = new URL(import.meta.url);

/** fs and the addon reading this very file: the first line comes back from both. */
function readBoth(): string {
  const viaFs = fs.readFileSync(HERE, 'utf8').split('\n')[0]!;
  const fd = native.openat2(C.AT_FDCWD, new TextEncoder().encode(HERE.pathname), C.O_RDONLY | C.O_CLOEXEC, 0, 0);
  if (fd < 0) throw new Error(`openat2: ${fd}`);
  const buf = new Uint8Array(64);
  const n = native.pread(fd, buf, 0, buf.length, 0);
  native.close(fd);
  if (n < 0) throw new Error(`pread: ${n}`);
  const viaAddon = new TextDecoder().decode(buf.subarray(0, n)).split('\n')[0]!;
  if (viaFs !== viaAddon) throw new Error(`fs read '${viaFs}', the addon '${viaAddon}'`);
  return viaFs;
}

function startWorker(): Promise<string> {
  return new Promise((resolve, reject) => {
    const w = new Worker(HERE, { workerData: 'worker' });
    let got = '';
    w.on('message', (m: string) => (got = m));
    w.on('error', reject);
    w.on('exit', (code) => (code === 0 ? resolve(got) : reject(new Error(`worker exit ${code}`))));
  });
}

function threads(): string[] {
  const out: string[] = [];
  for (const tid of fs.readdirSync('/proc/self/task')) {
    const status = fs.readFileSync(`/proc/self/task/${tid}/status`, 'utf8');
    const seccomp = /^Seccomp:\s*(\d+)/m.exec(status)?.[1] ?? '?';
    const name = /^Name:\s*(.*)$/m.exec(status)?.[1] ?? '?';
    out.push(`${tid} ${seccomp} ${name}`);
  }
  return out;
}

async function main(): Promise<void> {
  const mode = process.argv[2] as SeccompMode;
  const action = process.argv[3];
  const log = new Logger('info', 'main');
  if (action === 'threads') {
    // threads that exist before the install: a worker waiting for a message, the threadpool's
    const w = new Worker('require("node:worker_threads").parentPort.once("message", () => {})', { eval: true });
    await new Promise((r) => w.once('online', r));
    await fs.promises.readFile(HERE);
    installSeccomp(mode, log);
    for (const line of threads()) console.log(line);
    w.postMessage('done');
    return;
  }
  installSeccomp(mode, log);
  if (action === 'work') {
    const fromWorker = await startWorker();
    const here = readBoth();
    // ioctl(TCGETS) on stdio: one of the requests the filter lets through
    for (const fd of [0, 1, 2]) tty.isatty(fd);
    await new Promise((r) => setTimeout(r, 20));
    console.log(fromWorker === here ? 'work done' : `worker read '${fromWorker}'`);
  } else if (action === 'forbidden') {
    os.getPriority();
    console.log('survived');
  } else if (action === 'twice') {
    try {
      installSeccomp(mode, log);
      console.log('installed twice');
    } catch (e) {
      console.log((e as Error).message);
    }
  }
}

if (isMainThread) {
  await main();
} else {
  const vq = await loadVirtqueueModule(createSharedMemory());
  if (typeof vq.layout.CONTROL_BASE !== 'number') throw new Error('the AS module did not load');
  const line = readBoth();
  await new Promise((r) => setTimeout(r, 10));
  parentPort!.postMessage(line);
}
