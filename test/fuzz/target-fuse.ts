/**
 * Fuzz target `fuse`: the whole FUSE server (header checks, session gate, every opcode's argument
 * checks in src/fuse/args.ts and the src/abi/fuse.ts decoders) over BufferReader/BufferWriter, against
 * the passthrough on a temporary share with the real wasm inode and handle tables, as one worker of the
 * daemon runs it. A case is a session: INIT (mostly well formed) and up to 12 requests, each built for
 * its opcode from node ids and handles learnt earlier in the case, or raw, then perhaps damaged (bytes
 * flipped, cut short, fuse_in_header.len rewritten), with a reply buffer of any size. After the case the
 * session is destroyed as a disconnect does.
 * Invariants: handle() returns; a reply (unless there is none: FORGETs, or no room for a header) has
 * fuse_out_header.len = the value returned = the bytes written, within the buffer; error 0 or -1..-4095
 * and then a bare header; unique echoed; no handler exception (logged as an error with a stack); and
 * the process's open fds back at their count once the session is gone.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import fc from 'fast-check';
import { ENTRY_OUT_SIZE, IN_HEADER_SIZE, OUT_HEADER_SIZE, Opcode } from '../../src/abi/fuse.js';
import { RequestBuilder, concat, cstr, le } from '../../src/frontend/fuse-requests.js';
import { Passthrough } from '../../src/fs/passthrough.js';
import { FuseServer } from '../../src/fuse/server.js';
import { Logger } from '../../src/log.js';
import { createSharedMemory, loadVirtqueueModule } from '../../src/virtio/wasm.js';
import { BufferReader, BufferWriter } from '../helpers/buffer-io.js';
import { type Counter, type FuzzTarget, openFds } from './runner.js';

const NAMES = ['a', 'b', 'd', 'x', 's', 'n1', 'n2', '.', '..', 'a/b', '', 'é', 'x'.repeat(255), 'y'.repeat(256), 'user.k', 'trusted.t'];
/** Opcodes 0..53 and some beyond; FALLOCATE and COPY_FILE_RANGE lengths are capped (a disk must not fill). */
const OPCODE = fc.oneof({ weight: 9, arbitrary: fc.integer({ min: 1, max: 53 }) }, fc.constantFrom(0, 4096, 0xffffffff));
const U32 = fc.oneof(fc.integer({ min: 0, max: 4096 }), fc.constantFrom(0xffffffff, 0x80000000, 1 << 20, 1 << 17, 0o100644, 0o40755, 0o20644));
const U64 = fc.oneof(fc.bigInt({ min: 0n, max: 1n << 16n }), fc.constantFrom(0n, (1n << 53n) - 1n, 1n << 53n, (1n << 63n), (1n << 64n) - 1n));

const step = fc.record({
  op: OPCODE,
  /** < 8: the n-th node id / handle learnt in this case (the root is the first); else a raw value */
  node: fc.oneof({ weight: 6, arbitrary: fc.nat(7) }, fc.bigInt({ min: 0n, max: (1n << 64n) - 1n })),
  fh: fc.oneof({ weight: 6, arbitrary: fc.nat(7) }, fc.bigInt({ min: 0n, max: (1n << 64n) - 1n })),
  name: fc.constantFrom(...NAMES),
  name2: fc.constantFrom(...NAMES),
  a: U64,
  b: U32,
  c: U32,
  data: fc.uint8Array({ maxLength: 64 }),
  /** one request in eight is raw bytes after the header */
  raw: fc.oneof({ weight: 7, arbitrary: fc.constant(null) }, fc.uint8Array({ maxLength: 160 })),
  mutate: fc.oneof(
    { weight: 6, arbitrary: fc.constant(null) },
    fc.record({ flip: fc.nat(400), xor: fc.integer({ min: 1, max: 255 }) }),
    fc.record({ cut: fc.nat(400) }),
    fc.record({ len: fc.oneof(fc.nat(400), fc.constant(0xffffffff)) }),
  ),
  /** reply room: mostly plenty, sometimes too little for the reply or even its header */
  cap: fc.oneof({ weight: 4, arbitrary: fc.constant(1 << 17) }, fc.constantFrom(0, 8, 16, 24, 100, 144, 4096)),
  uid: fc.constantFrom(0, 0, 0, 0, 0, 1000, 0xffffffff),
});
type Step = typeof step extends fc.Arbitrary<infer T> ? T : never;

const kase = fc.record({
  init: fc.oneof({ weight: 9, arbitrary: fc.constant(null) }, fc.record({ major: fc.nat(9), minor: fc.nat(45), flags: fc.nat() })),
  steps: fc.array(step, { minLength: 1, maxLength: 12 }),
});

const NO_REPLY = new Set<number>([Opcode.Forget, Opcode.BatchForget]);
const ENTRY_OPS = new Set<number>([Opcode.Lookup, Opcode.Mkdir, Opcode.Mknod, Opcode.Symlink, Opcode.Link, Opcode.Create]);

function fixture(dir: string): void {
  // Names as bytes: a damaged request may have made one that is not UTF-8.
  for (const e of fs.readdirSync(dir, { encoding: 'buffer' })) fs.rmSync(Buffer.concat([Buffer.from(`${dir}/`), e]), { recursive: true, force: true });
  fs.writeFileSync(path.join(dir, 'a'), Buffer.alloc(4096, 0x61));
  fs.writeFileSync(path.join(dir, 'b'), '');
  fs.mkdirSync(path.join(dir, 'd'));
  fs.writeFileSync(path.join(dir, 'd', 'x'), 'x');
  fs.symlinkSync('a', path.join(dir, 's'));
}

/** The request bytes for one step: the opcode's own layout from the case's node ids and handles, or raw. */
function build(rb: RequestBuilder, s: Step, nodes: bigint[], fhs: bigint[]): Uint8Array {
  const node = typeof s.node === 'number' ? nodes[s.node % nodes.length]! : s.node;
  const fh = typeof s.fh === 'number' ? (fhs.length ? fhs[s.fh % fhs.length]! : BigInt(s.fh)) : s.fh;
  const other = typeof s.node === 'number' ? nodes[(s.node + 1) % nodes.length]! : 1n;
  const cap = (v: bigint): bigint => v & ((1n << 20n) - 1n);
  const hdr = { uid: s.uid, gid: s.uid };
  if (s.raw) return rb.request(s.op, node, s.raw, hdr);
  const n = cstr(s.name);
  let args: Uint8Array;
  switch (s.op) {
    case Opcode.Lookup: case Opcode.Unlink: case Opcode.Rmdir: case Opcode.Removexattr: args = n; break;
    case Opcode.Mkdir: args = concat(le([['u32', s.b], ['u32', s.c]]), n); break;
    case Opcode.Mknod: args = concat(le([['u32', s.b], ['u32', s.c], ['u32', 0], ['u32', 0]]), n); break;
    case Opcode.Create: args = concat(le([['u32', s.c], ['u32', s.b], ['u32', 0], ['u32', 0]]), n); break;
    case Opcode.Symlink: args = concat(n, cstr(s.name2)); break;
    case Opcode.Link: args = concat(le([['u64', other]]), n); break;
    case Opcode.Rename: args = concat(le([['u64', other]]), n, cstr(s.name2)); break;
    case Opcode.Rename2: args = concat(le([['u64', other], ['u32', s.c & 7], ['u32', 0]]), n, cstr(s.name2)); break;
    case Opcode.Forget: args = le([['u64', s.a]]); break;
    case Opcode.BatchForget: args = concat(le([['u32', s.b & 15], ['u32', 0]]), ...nodes.map((x) => le([['u64', x], ['u64', s.a]]))); break;
    case Opcode.Open: case Opcode.Opendir: args = le([['u32', s.b], ['u32', s.c]]); break;
    case Opcode.Read: case Opcode.Readdir: case Opcode.Readdirplus:
      args = le([['u64', fh], ['u64', s.a], ['u32', s.b], ['u32', 0], ['u64', 0n], ['u32', s.c], ['u32', 0]]); break;
    case Opcode.Write: args = concat(le([['u64', fh], ['u64', s.a], ['u32', s.data.length], ['u32', s.c], ['u64', 0n], ['u32', 0], ['u32', 0]]), s.data); break;
    case Opcode.Setattr:
      args = le([['u32', s.b], ['u32', 0], ['u64', fh], ['u64', cap(s.a)], ['u64', s.a], ['u64', s.a], ['u64', s.a], ['u64', s.a],
        ['u32', s.c], ['u32', s.c], ['u32', s.c], ['u32', s.b], ['u32', s.c], ['u32', s.c], ['u32', 0], ['u32', 0]]); break;
    case Opcode.Setxattr: args = concat(le([['u32', s.data.length], ['u32', s.b & 3], ['u32', 0], ['u32', 0]]), n, s.data); break;
    case Opcode.Getxattr: args = concat(le([['u32', s.b], ['u32', 0]]), n); break;
    case Opcode.Fallocate: args = le([['u64', fh], ['u64', cap(s.a)], ['u64', cap(BigInt(s.b))], ['u32', s.c & 0x7f], ['u32', 0]]); break;
    case Opcode.CopyFileRange:
      args = le([['u64', fh], ['u64', cap(s.a)], ['u64', other], ['u64', fh], ['u64', cap(s.a)], ['u64', cap(BigInt(s.b))], ['u64', BigInt(s.c)]]); break;
    case Opcode.Init: args = le([['u32', 7], ['u32', 38], ['u32', s.b], ['u32', s.c], ['u32', s.c], ['u32', 0], ['u32', 0], ['u32', 0]]); break;
    default:
      // fh first, as most *_in structs have it; then an offset, a size, flags and a name.
      args = concat(le([['u64', fh], ['u64', s.a], ['u32', s.b], ['u32', s.c]]), n);
  }
  return rb.request(s.op, node, args, hdr);
}

function damage(b: Uint8Array, m: Step['mutate']): Uint8Array {
  if (m === null) return b;
  if ('flip' in m) {
    const c = b.slice();
    if (c.length > 0) c[m.flip % c.length]! ^= m.xor;
    return c;
  }
  if ('cut' in m) return b.slice(0, m.cut % (b.length + 1));
  const c = b.slice();
  if (c.length >= 4) new DataView(c.buffer).setUint32(0, m.len, true);
  return c;
}

export async function fuseTarget(): Promise<FuzzTarget> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'vfsd-fuzz-fuse-'));
  fixture(dir);
  const vq = await loadVirtqueueModule(createSharedMemory());
  const pt = Passthrough.open(dir, vq);
  vq.handleInit();
  const errors: string[] = [];
  const log = new Logger('error', 'fuzz', (line, level) => { if (level === 'error') errors.push(line); });
  const counter: Counter = { cases: 0 };
  const property = fc.property(kase, ({ init, steps }) => {
    if (++counter.cases % 256 === 0) fixture(dir);
    // Per case: the runtime opens fds of its own now and then (stdio set up on first use).
    const baseFds = openFds();
    const server = new FuseServer(pt, { xattr: true, log });
    const rb = new RequestBuilder(0, 0, 4242);
    errors.length = 0;
    const nodes: bigint[] = [1n];
    const fhs: bigint[] = [];
    try {
      const i = init ?? { major: 7, minor: 38, flags: 0xffffffff };
      server.handle(new BufferReader(rb.init(i.flags, 0, i.major, i.minor)), new BufferWriter(4096));
      for (const s of steps) {
        const req = damage(build(rb, s, nodes, fhs), s.mutate);
        const w = new BufferWriter(s.cap);
        const ret = server.handle(new BufferReader(req), w);
        const view = new DataView(req.buffer, req.byteOffset, req.byteLength);
        const whole = req.length >= IN_HEADER_SIZE && view.getUint32(0, true) >= IN_HEADER_SIZE && view.getUint32(0, true) <= req.length;
        const opcode = req.length >= 8 ? view.getUint32(4, true) : -1;
        if (ret === 0) {
          if (s.cap >= OUT_HEADER_SIZE && !(whole && NO_REPLY.has(opcode))) throw new Error(`no reply to opcode ${opcode} with ${s.cap} bytes of room`);
          continue;
        }
        const out = new DataView(w.out.buffer);
        const len = out.getUint32(0, true), error = out.getInt32(4, true), unique = out.getBigUint64(8, true);
        if (ret < OUT_HEADER_SIZE || ret > s.cap) throw new Error(`returned ${ret} with ${s.cap} bytes of room`);
        if (len !== ret || w.written !== ret) throw new Error(`opcode ${opcode}: out header len ${len}, returned ${ret}, written ${w.written}`);
        if (error > 0 || error < -4095) throw new Error(`opcode ${opcode}: error ${error}`);
        if (error !== 0 && len !== OUT_HEADER_SIZE) throw new Error(`opcode ${opcode}: error ${error} with ${len} bytes`);
        // A request too short for its header is answered with unique 0; any other echoes its unique.
        const want = req.length >= IN_HEADER_SIZE ? view.getBigUint64(8, true) : 0n;
        if (unique !== want) throw new Error(`opcode ${opcode}: unique ${unique}, sent ${want}`);
        if (errors.some((e) => e.includes('\n    at ') || / at .*\.js:\d+/.test(e))) throw new Error(`a handler threw: ${errors.join('\n')}`);
        if (error === 0 && ENTRY_OPS.has(opcode) && ret >= OUT_HEADER_SIZE + ENTRY_OUT_SIZE) {
          const id = out.getBigUint64(OUT_HEADER_SIZE, true);
          if (id !== 0n) nodes.push(id);
          if (opcode === Opcode.Create && ret >= OUT_HEADER_SIZE + ENTRY_OUT_SIZE + 16) fhs.push(out.getBigUint64(OUT_HEADER_SIZE + ENTRY_OUT_SIZE, true));
        }
        if (error === 0 && (opcode === Opcode.Open || opcode === Opcode.Opendir) && ret >= OUT_HEADER_SIZE + 16) fhs.push(out.getBigUint64(OUT_HEADER_SIZE, true));
      }
    } finally {
      // The guest went away: everything it held is dropped (src/daemon.ts's reset hook does the same).
      pt.destroy();
    }
    const now = openFds();
    const left = [...now].filter(([fd, what]) => baseFds.get(fd) !== what);
    if (left.length > 0) throw new Error(`fd(s) left open after the session: ${left.map(([fd, what]) => `${fd} ${what}`).join(', ')}`);
    return true;
  });
  return {
    name: 'fuse',
    property: property as unknown as FuzzTarget['property'],
    counter,
    close: () => {
      pt.close();
      fs.rmSync(dir, { recursive: true, force: true });
    },
  };
}
