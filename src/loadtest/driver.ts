/**
 * A driver thread of the load tester: keeps `depth` requests in flight on each of its queues, as a
 * guest kernel's virtio-fs driver would, and checks every reply. Runs on the AS module's driver ring
 * code (assembly/driver.ts) over the shared guest RAM; the per-request path allocates nothing: request
 * templates are copied into the slot and patched through typed arrays, replies are checked in place.
 *
 * Sleeping: with nothing to reap it re-arms the used-ring notification (EVENT_IDX: used_event), re-checks,
 * and blocks in poll(2) on its queues' call eventfds, like a guest waiting for an interrupt.
 */
import { parentPort, workerData } from 'node:worker_threads';
import { ENTRY_OUT_SIZE, OUT_HEADER_SIZE, Opcode } from '../abi/fuse.js';
import { RequestBuilder } from '../frontend/fuse-requests.js';
import { C, native } from '../native.js';
import { loadVirtqueueModule } from '../virtio/wasm.js';
import { SLOT_DATA, SLOT_REPLY } from './guest.js';
import { Histogram } from './histogram.js';
import {
  COUNTER_STRIDE, CTL_ABORT, CTL_PHASE, C_BYTES, C_DONE, C_SECONDS, C_ERRORS, C_OPS, C_READ_DATA, C_REQUESTS, C_SENT, C_VERIFIED,
  C_WRITE_DATA, OPCODE_SLOTS, type OpKindName,
  PHASE_MEASURE, PHASE_STOP, PHASE_WAIT, type ThreadPlan, type ThreadReport, movesData,
} from './plan.js';
import { NAME_LEN, StepKind, buildSteps } from './steps.js';
import { errnoName, headerFault } from './verify.js';

const plan = workerData as ThreadPlan;
const vq = await loadVirtqueueModule(plan.memory);
const L = vq.layout;
const buf = plan.memory.buffer as unknown as SharedArrayBuffer;
const u8 = new Uint8Array(buf, 0, plan.viewBytes);
const u32 = new Uint32Array(buf, 0, plan.viewBytes >> 2);
const ctl = new Int32Array(plan.ctl);
const counters = new Float64Array(plan.counters, plan.thread * COUNTER_STRIDE * 8, COUNTER_STRIDE);
const hist = new Histogram(new Float64Array(plan.histogram));
const steps = buildSteps(plan.bs);
const fx = plan.fixture;
const bs = plan.bs;
const nq = plan.queues.length;
const depth = plan.queues[0]!.slots;
const total = nq * depth;

// ---- request templates (built once; per request they are copied and patched)

const rb = new RequestBuilder();
const name = (c: string): string => c.padEnd(NAME_LEN, '0');
const n64 = (v: [number, number]): bigint => BigInt(v[0]) + (BigInt(v[1]) << 32n);
const templates: Uint8Array[] = [];
templates[StepKind.Read] = rb.read(n64(fx.file), n64(fx.fileFh), 0n, bs);
templates[StepKind.Write] = rb.write(n64(fx.wfile), n64(fx.wfileFh), 0n, new Uint8Array(0));
templates[StepKind.Getattr] = rb.getattr(n64(fx.file));
templates[StepKind.Lookup] = rb.lookup(n64(fx.tree), name('f'));
templates[StepKind.Create] = rb.create(n64(fx.scratch), name('c'), C.O_RDWR | C.O_CREAT | C.O_EXCL, 0o100644);
templates[StepKind.Release] = rb.release(0n, 0n);
templates[StepKind.Unlink] = rb.unlink(n64(fx.scratch), name('c'));
templates[StepKind.Forget] = rb.forget(0n, 1n);
templates[StepKind.Open] = rb.open(n64(fx.file), C.O_RDONLY);
templates[StepKind.Flush] = rb.flush(n64(fx.file), 0n);
templates[StepKind.Opendir] = rb.open(n64(fx.tree), C.O_RDONLY | C.O_DIRECTORY, Opcode.Opendir);
templates[StepKind.Readdir] = rb.readdir(n64(fx.tree), 0n, 0n, 4096);
templates[StepKind.Releasedir] = rb.release(n64(fx.tree), 0n, Opcode.Releasedir);
for (const st of steps) {
  const t = templates[st.kind]!;
  // WRITE's data goes in its own pages: the template is header and write_in, with the real total length.
  if (st.kind === StepKind.Write) new DataView(t.buffer).setUint32(0, st.reqLen, true);
  else if (t.length !== st.reqLen) throw new Error(`template of step ${st.kind}: ${t.length} bytes, shape says ${st.reqLen}`);
}
/** where the name's digits start, per step that carries one */
const NAME_AT_LOOKUP = 40;
const NAME_AT_CREATE = 56;

const SEQUENCES: Record<OpKindName, StepKind[]> = {
  'read-seq': [StepKind.Read],
  'read-rand': [StepKind.Read],
  'write-seq': [StepKind.Write],
  'write-rand': [StepKind.Write],
  getattr: [StepKind.Getattr],
  lookup: [StepKind.Lookup],
  'lookup-miss': [StepKind.Lookup],
  'create-unlink': [StepKind.Create, StepKind.Release, StepKind.Unlink, StepKind.Forget],
  readdir: [StepKind.Opendir, StepKind.Readdir, StepKind.Releasedir],
  'open-close': [StepKind.Open, StepKind.Flush, StepKind.Release],
};
const kinds = plan.kinds;
const seqs = kinds.map((k) => SEQUENCES[k]);
const data = kinds.map((k) => movesData(k));
const isMiss = kinds.map((k) => k === 'lookup-miss');
const isSeq = kinds.map((k) => k === 'read-seq' || k === 'write-seq');

// ---- per-slot state, flat over (queue, slot)

const opKind = new Int32Array(total);
const stepAt = new Int32Array(total);
const t0 = new Float64Array(total);
const offset = new Float64Array(total);
const nodeLo = new Uint32Array(total);
const nodeHi = new Uint32Array(total);
const fhLo = new Uint32Array(total);
const fhHi = new Uint32Array(total);
const uniqLo = new Uint32Array(total);
const entryIdx = new Int32Array(total);
const seen = new Float64Array(total);
/** READDIR's position: the last entry's cookie, an opaque u64 (ext4's are hashes up to 2^63) */
const cookieLo = new Uint32Array(total);
const cookieHi = new Uint32Array(total);
const busy = new Uint8Array(total);
/** head → slot, per queue (without indirect descriptors a slot's head is slot × descriptors per slot) */
const headSlot = plan.queues.map((q) => new Int32Array(q.size).fill(-1));
const dirty = new Uint8Array(nq);

const blocks = Math.max(1, Math.floor(fx.fileBytes / bs));
let rng = (0x9e3779b9 ^ (plan.thread * 0x85ebca6b)) >>> 0 || 1;
const rand = (): number => {
  rng ^= rng << 13;
  rng >>>= 0;
  rng ^= rng >>> 17;
  rng ^= rng << 5;
  rng >>>= 0;
  return rng;
};
let readCursor = (plan.thread * 7919) % blocks;
let writeCursor = (plan.thread * 7919) % blocks;
let lookupCursor = plan.thread * 97;
let seq = 0;
let inflight = 0;
let measuring = false;
let stopping = false;
let failure: string | undefined;
let lastReply = performance.now();
const errnos = new Float64Array(4096);
const written = new Float64Array(64);
let writtenCount = 0;
const lookupCount = new Float64Array(Math.max(1, fx.entries));
const lookupLo = new Uint32Array(Math.max(1, fx.entries));
const lookupHi = new Uint32Array(Math.max(1, fx.entries));

let measureStart = 0;
/** Ends the measured interval: its length is this thread's own, so ops and histogram agree exactly. */
function stopMeasuring(): void {
  if (!measuring) return;
  measuring = false;
  counters[C_SECONDS] = (performance.now() - measureStart) / 1000;
}

function fail(msg: string): void {
  if (failure === undefined) failure = msg;
  Atomics.store(ctl, CTL_ABORT, 1);
}

function putName(at: number, letter: number, n: number): void {
  u8[at] = letter;
  for (let k = NAME_LEN - 1; k >= 1; k--) {
    u8[at + k] = 48 + (n % 10);
    n = Math.floor(n / 10);
  }
}

function slotWin(qi: number, s: number): number {
  const q = plan.queues[qi]!;
  return q.dataWin + s * q.slotBytes;
}

function submit(qi: number, s: number, g: number): void {
  const q = plan.queues[qi]!;
  const sk = seqs[opKind[g]!]![stepAt[g]!]!;
  const st = steps[sk]!;
  const w = slotWin(qi, s);
  u8.set(templates[sk]!, w);
  const x = w >> 2;
  seq = (seq + 1) >>> 0;
  uniqLo[g] = seq;
  u32[x + 2] = seq; // fuse_in_header.unique: the queue index in the high half keeps it unique across queues
  u32[x + 3] = q.index;
  switch (sk) {
    case StepKind.Read:
      u32[x + 12] = offset[g]! >>> 0; // fuse_read_in.offset (header 40 + 8)
      u32[x + 13] = Math.floor(offset[g]! / 4294967296);
      break;
    case StepKind.Write:
      u32[x + 12] = offset[g]! >>> 0;
      u32[x + 13] = Math.floor(offset[g]! / 4294967296);
      u32[x + 14] = bs;
      vq.patternFill(w + SLOT_DATA, bs, offset[g]!, plan.writeSeed);
      break;
    case StepKind.Lookup:
      putName(w + NAME_AT_LOOKUP, isMiss[opKind[g]!] ? 109 /* m */ : 102 /* f */, entryIdx[g]!);
      break;
    case StepKind.Create:
      putName(w + NAME_AT_CREATE, 99 /* c */, q.index * 10000 + s);
      break;
    case StepKind.Unlink:
      putName(w + NAME_AT_LOOKUP, 99, q.index * 10000 + s);
      break;
    case StepKind.Release:
    case StepKind.Forget:
    case StepKind.Flush:
      u32[x + 4] = nodeLo[g]!; // fuse_in_header.nodeid
      u32[x + 5] = nodeHi[g]!;
      if (sk !== StepKind.Forget) {
        u32[x + 10] = fhLo[g]!; // fh: the first field of release_in / flush_in
        u32[x + 11] = fhHi[g]!;
      }
      break;
    case StepKind.Readdir:
    case StepKind.Releasedir:
      u32[x + 10] = fhLo[g]!;
      u32[x + 11] = fhHi[g]!;
      if (sk === StepKind.Readdir) {
        u32[x + 12] = cookieLo[g]!;
        u32[x + 13] = cookieHi[g]!;
      }
      break;
    default:
      break;
  }
  const head = vq.drvChain(q.index, s, st.shape);
  if (head < 0) {
    fail(`internal: drvChain error ${head}`);
    return;
  }
  headSlot[qi]![head] = s;
  vq.drvAdd(q.index, head);
  dirty[qi] = 1;
  inflight++;
  if (measuring) counters[C_REQUESTS]! += 1;
  counters[C_SENT + (st.opcode < OPCODE_SLOTS ? st.opcode : 0)]! += 1;
}

function startOp(qi: number, s: number, g: number): void {
  let k = 0;
  if (kinds.length > 1) {
    const r = rand() % plan.weights[plan.weights.length - 1]!;
    while (r >= plan.weights[k]!) k++;
  }
  opKind[g] = k;
  stepAt[g] = 0;
  busy[g] = 1;
  const kind = kinds[k]!;
  if (data[k]) {
    const write = kind === 'write-seq' || kind === 'write-rand';
    let b: number;
    if (isSeq[k]) {
      if (write) b = writeCursor = (writeCursor + 1) % blocks;
      else b = readCursor = (readCursor + 1) % blocks;
    } else {
      b = rand() % blocks;
    }
    offset[g] = b * bs;
  } else if (kind === 'lookup') {
    entryIdx[g] = lookupCursor = (lookupCursor + 1) % fx.entries;
  } else if (kind === 'lookup-miss') {
    entryIdx[g] = rand() % 10_000_000;
  } else if (kind === 'readdir') {
    cookieLo[g] = 0;
    cookieHi[g] = 0;
    seen[g] = 0;
  } else if (kind === 'open-close') {
    nodeLo[g] = fx.file[0];
    nodeHi[g] = fx.file[1];
  }
  t0[g] = performance.now();
  submit(qi, s, g);
}

function endOp(qi: number, s: number, g: number, ok: boolean): void {
  busy[g] = 0;
  if (measuring) {
    if (ok) {
      hist.record((performance.now() - t0[g]!) * 1e6);
      counters[C_OPS]! += 1;
      if (data[opKind[g]!]) counters[C_BYTES]! += bs;
    } else {
      counters[C_ERRORS]! += 1;
    }
    if (plan.opsQuota > 0 && counters[C_OPS]! + counters[C_ERRORS]! >= plan.opsQuota) {
      stopping = true;
      stopMeasuring();
    }
  }
  if (!stopping && failure === undefined) startOp(qi, s, g);
}

const u64At = (at: number): number => u32[at >> 2]! + u32[(at >> 2) + 1]! * 4294967296;

/** One used element of queue qi. */
function complete(qi: number, id: number, len: number): void {
  const s = headSlot[qi]![id] ?? -1;
  if (s < 0) {
    fail(`queue ${plan.queues[qi]!.index}: the backend returned head ${id}, which is not in flight`);
    return;
  }
  headSlot[qi]![id] = -1;
  inflight--;
  const g = qi * depth + s;
  const k = opKind[g]!;
  const sk = seqs[k]![stepAt[g]!]!;
  const st = steps[sk]!;
  const w = slotWin(qi, s);
  const r = w + SLOT_REPLY;
  let error = 0;
  if (st.replyCap === 0) {
    if (len !== 0) {
      fail(`FORGET got a reply of ${len} bytes (it has none)`);
      return;
    }
  } else {
    error = vq.drvReplyCheck(r, len, st.replyCap, uniqLo[g]!, plan.queues[qi]!.index);
    if (error > 0) {
      fail(headerFault(error, (Opcode[st.opcode] ?? String(st.opcode)).toUpperCase(), u8, r, len, st.replyCap));
      return;
    }
  }
  if (isMiss[k] && sk === StepKind.Lookup) {
    // A miss is ENOENT, or (FUSE's negative entry) success with node id 0.
    if (error === 0 && (u32[(r + OUT_HEADER_SIZE) >> 2]! !== 0 || u32[((r + OUT_HEADER_SIZE) >> 2) + 1]! !== 0)) {
      fail('LOOKUP of a name that does not exist succeeded');
      return;
    }
    if (error === -C.errno.ENOENT || error === 0) {
      endOp(qi, s, g, true);
      return;
    }
  }
  if (error < 0) {
    errnos[-error]! += 1;
    // The operation ends with its first failed request (counted by errno, not timed).
    endOp(qi, s, g, false);
    return;
  }
  const p = r + OUT_HEADER_SIZE;
  switch (sk) {
    case StepKind.Read: {
      const got = len - OUT_HEADER_SIZE;
      if (got !== bs) {
        fail(`READ of ${bs} bytes at ${offset[g]} returned ${got}`);
        return;
      }
      const bad = vq.patternCheck(w + SLOT_DATA, bs, offset[g]!, fx.fixtureSeed);
      if (bad >= 0) {
        fail(`READ at ${offset[g]}: byte ${offset[g]! + bad} of the file is not what the fixture holds`);
        return;
      }
      if (measuring) counters[C_VERIFIED]! += bs;
      counters[C_READ_DATA]! += bs;
      break;
    }
    case StepKind.Write: {
      const n = u32[p >> 2]!;
      if (n !== bs) {
        fail(`WRITE of ${bs} bytes at ${offset[g]} wrote ${n}`);
        return;
      }
      written[writtenCount++ % written.length] = offset[g]!;
      counters[C_WRITE_DATA]! += bs;
      break;
    }
    case StepKind.Getattr: {
      const size = u64At(p + 24); // fuse_attr_out: attr_valid, nsec, dummy, then fuse_attr (ino, size…)
      if (size !== fx.fileBytes) {
        fail(`GETATTR says the file has ${size} bytes, not ${fx.fileBytes}`);
        return;
      }
      break;
    }
    case StepKind.Lookup: {
      const e = entryIdx[g]!;
      if (u32[p >> 2] === 0 && u32[(p >> 2) + 1] === 0) {
        fail(`LOOKUP of entry ${e} returned node id 0`);
        return;
      }
      lookupLo[e] = u32[p >> 2]!;
      lookupHi[e] = u32[(p >> 2) + 1]!;
      lookupCount[e]! += 1;
      break;
    }
    case StepKind.Create:
      nodeLo[g] = u32[p >> 2]!;
      nodeHi[g] = u32[(p >> 2) + 1]!;
      fhLo[g] = u32[(p + ENTRY_OUT_SIZE) >> 2]!;
      fhHi[g] = u32[((p + ENTRY_OUT_SIZE) >> 2) + 1]!;
      break;
    case StepKind.Open:
    case StepKind.Opendir:
      fhLo[g] = u32[p >> 2]!;
      fhHi[g] = u32[(p >> 2) + 1]!;
      break;
    case StepKind.Readdir: {
      const got = len - OUT_HEADER_SIZE;
      if (got > 0) {
        // struct fuse_dirent: ino u64, off u64, namelen u32, type u32, name, padded to 8
        const d = w + SLOT_DATA;
        let o = 0;
        while (o + 24 <= got) {
          const nl = u32[(d + o + 16) >> 2]!;
          if (nl === 0 || o + 24 + nl > got) {
            fail(`READDIR returned a malformed entry at byte ${o}`);
            return;
          }
          const dot = u8[d + o + 24] === 46 && (nl === 1 || (nl === 2 && u8[d + o + 25] === 46));
          if (!dot) seen[g]! += 1;
          cookieLo[g] = u32[(d + o + 8) >> 2]!;
          cookieHi[g] = u32[(d + o + 12) >> 2]!;
          o += (24 + nl + 7) & ~7;
        }
        submit(qi, s, g); // the next READDIR, from the last entry's offset
        return;
      }
      if (seen[g] !== fx.entries) {
        fail(`READDIR listed ${seen[g]} entries, the directory has ${fx.entries}`);
        return;
      }
      break;
    }
    default:
      break;
  }
  if (stepAt[g]! + 1 < seqs[k]!.length) {
    stepAt[g]! += 1;
    submit(qi, s, g);
    return;
  }
  endOp(qi, s, g, true);
}

function run(): void {
  const calls = Int32Array.from(plan.queues.map((q) => q.call));
  const revents = new Int32Array(nq);
  while (Atomics.load(ctl, CTL_PHASE) === PHASE_WAIT) Atomics.wait(ctl, CTL_PHASE, PHASE_WAIT, 100);
  for (let qi = 0; qi < nq; qi++) for (let s = 0; s < depth; s++) startOp(qi, s, qi * depth + s);
  let phase = PHASE_WAIT;
  for (;;) {
    if (Atomics.load(ctl, CTL_ABORT) !== 0) break;
    const now = Atomics.load(ctl, CTL_PHASE);
    if (now !== phase) {
      phase = now;
      if (phase === PHASE_MEASURE) {
        hist.reset();
        measuring = true;
        measureStart = performance.now();
      } else if (phase === PHASE_STOP) {
        stopMeasuring();
        stopping = true;
      }
    }
    let reaped = 0;
    for (let qi = 0; qi < nq && failure === undefined; qi++) {
      const q = plan.queues[qi]!;
      const n = vq.drvReap(q.index);
      const list = (L.DRV_REAP + q.index * L.DRV_REAP_MAX * 8) >> 2;
      for (let i = 0; i < n && failure === undefined; i++) complete(qi, u32[list + 2 * i]!, u32[list + 2 * i + 1]!);
      reaped += n;
    }
    if (failure !== undefined) break;
    for (let qi = 0; qi < nq; qi++) {
      if (dirty[qi] === 0) continue;
      dirty[qi] = 0;
      const q = plan.queues[qi]!;
      if (vq.drvKick(q.index) === 1) native.eventfdWrite(q.kick, 1);
    }
    const t = performance.now();
    if (reaped > 0) {
      lastReply = t;
      continue;
    }
    if (inflight === 0) {
      if (stopping) break;
      continue;
    }
    if (t - lastReply > plan.timeoutMs) {
      fail(`no reply from the backend for ${(plan.timeoutMs / 1000).toFixed(1)} s with ${inflight} request(s) in flight`);
      break;
    }
    let more = false;
    for (let qi = 0; qi < nq; qi++) if (vq.drvArm(plan.queues[qi]!.index) === 1) more = true;
    if (more) continue;
    if (native.poll(calls, nq, 100, revents) > 0) {
      for (let qi = 0; qi < nq; qi++) if (revents[qi] !== 0) native.eventfdRead(calls[qi]!);
    }
  }
  counters[C_DONE] = 1;
}

parentPort!.postMessage({ ready: true });
run();
const report: ThreadReport = {
  thread: plan.thread,
  ...(failure !== undefined ? { failure } : {}),
  errnos: Object.fromEntries(
    Array.from(errnos.entries())
      .filter(([, n]) => n > 0)
      .map(([e, n]) => [errnoName(e), n]),
  ),
  written: Array.from(written.subarray(0, Math.min(writtenCount, written.length))),
  lookups: Array.from(lookupCount.entries())
    .filter(([, n]) => n > 0)
    .map(([i, n]) => [i, lookupLo[i]!, lookupHi[i]!, n]),
  maxNs: hist.maxNs,
};
parentPort!.postMessage(report);
