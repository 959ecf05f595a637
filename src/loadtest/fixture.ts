/**
 * The fixture, made through the backend itself (so it works for a backend whose directory the tester
 * cannot see): under `virtiofsd-ts-loadtest/` in the share, `read-<bytes>` (every byte a known function
 * of its offset: assembly/driver.ts patternFill), `write-<bytes>` (sized, contents overwritten by the
 * write workloads), `tree-<n>/` with n empty files, and a scratch directory per run for create-unlink.
 * Kept between runs (checked, and remade when wrong); the scratch directory is removed after its run.
 *
 * Requests go one at a time on queue 1's slot 0 from the main thread, before the driver threads start
 * and after they end.
 */
import { ATTR_OUT_SIZE, ENTRY_OUT_SIZE, FATTR_SIZE, INIT_OUT_SIZE, OPEN_OUT_SIZE, Opcode, WRITE_OUT_SIZE } from '../abi/fuse.js';
import { VIRTQ_DESC_F_WRITE } from '../abi/virtio.js';
import { RequestBuilder } from '../frontend/fuse-requests.js';
import { C } from '../native.js';
import { type LoadGuest, SLOT_DATA, SLOT_REPLY, SLOT_REQ } from './guest.js';
import type { Fixture, U64 } from './plan.js';
import { errnoName } from './verify.js';

/** the shape id the main thread's requests use (the workloads' shapes come first) */
const MAIN_SHAPE = 31;
export const FIXTURE_DIR = 'virtiofsd-ts-loadtest';
const FIXTURE_SEED = 0x5eed;

export class FuseError extends Error {
  constructor(readonly op: string, readonly errno: number) {
    super(`${op} failed: ${errnoName(errno)}`);
  }
}

export interface Reply {
  error: number;
  /** window address of the reply's first argument */
  args: number;
  /** bytes after fuse_out_header (arguments, or the data of READ/READDIR) */
  len: number;
}

/** FUSE requests one at a time from the main thread. */
export class MainFuse {
  readonly rb = new RequestBuilder();
  maxWrite = 4096;
  private readonly u8: Uint8Array;
  private readonly u32: Uint32Array;
  /** node ids looked up here, for FORGET at the end */
  readonly looked: U64[] = [];
  /** what this connection's setup and teardown sent (see WireTotals): requests by opcode, data bytes */
  readonly sent = new Map<number, number>();
  readData = 0;
  writeData = 0;

  constructor(readonly guest: LoadGuest, readonly timeoutMs: number) {
    const bytes = guest.win + guest.ramBytes;
    this.u8 = new Uint8Array(guest.sab, 0, bytes);
    this.u32 = new Uint32Array(guest.sab, 0, bytes >> 2);
  }

  private get slot(): number {
    return this.guest.slotWin(1, 0);
  }

  /** Sends req (+ outData pages) and returns the reply; replyArgs/inData size the writable buffers. */
  send(req: Uint8Array, replyArgs: number, o: { outData?: number; inData?: number; noReply?: boolean } = {}): Reply {
    const { vq } = this.guest;
    const L = vq.layout;
    if (req.length > SLOT_REPLY - SLOT_REQ) throw new RangeError('request too large for the slot');
    const w = this.slot;
    this.u8.set(req, w + SLOT_REQ);
    const segs: Array<[number, number, number]> = [[SLOT_REQ, req.length, 0]];
    if (o.outData) segs.push([SLOT_DATA, o.outData, 0]);
    if (!o.noReply) {
      segs.push([SLOT_REPLY, 16 + replyArgs, VIRTQ_DESC_F_WRITE]);
      if (o.inData) segs.push([SLOT_DATA, o.inData, VIRTQ_DESC_F_WRITE]);
    }
    const sh = new Uint32Array(this.guest.sab, L.DRV_SHAPES + MAIN_SHAPE * L.DRV_SHAPE_STRIDE, 4 + 3 * segs.length);
    sh.set([segs.length, SLOT_REPLY, o.noReply ? 0 : 16 + replyArgs + (o.inData ?? 0), req.length + (o.outData ?? 0)]);
    for (const [k, s] of segs.entries()) sh.set(s, 4 + 3 * k);
    const len = this.guest.call(1, MAIN_SHAPE, this.timeoutMs);
    const opcode = new DataView(req.buffer, req.byteOffset).getUint32(4, true);
    this.sent.set(opcode, (this.sent.get(opcode) ?? 0) + 1);
    const op = Opcode[opcode] ?? 'request';
    if (o.noReply) {
      if (len !== 0) throw new Error(`${op}: a reply of ${len} bytes to a request that has none`);
      return { error: 0, args: 0, len: 0 };
    }
    const r = w + SLOT_REPLY;
    const unique = new DataView(req.buffer, req.byteOffset).getUint32(8, true);
    if (len < 16 || this.u32[r >> 2] !== len || this.u32[(r >> 2) + 2] !== unique) {
      throw new Error(`${op}: malformed reply header (used length ${len})`);
    }
    const error = this.u32[(r >> 2) + 1]! | 0;
    if (error === 0 && opcode === Opcode.Read) this.readData += len - 16;
    if (error === 0 && opcode === Opcode.Write && len >= 20) this.writeData += this.u32[(r + 16) >> 2]!;
    // READ/READDIR data lands in the data pages; other replies' arguments follow the header
    return { error, args: o.inData ? w + SLOT_DATA : r + 16, len: len - 16 };
  }

  must(op: string, r: Reply): Reply {
    if (r.error !== 0) throw new FuseError(op, -r.error);
    return r;
  }

  u64(at: number): U64 {
    return [this.u32[at >> 2]!, this.u32[(at >> 2) + 1]!];
  }

  num(at: number): number {
    return this.u32[at >> 2]! + this.u32[(at >> 2) + 1]! * 4294967296;
  }

  init(): void {
    const r = this.must('INIT', this.send(this.rb.init(), INIT_OUT_SIZE));
    // fuse_init_out.max_write at 20 (older servers answer a shorter struct: keep the default then)
    if (r.len >= 24) this.maxWrite = this.u32[(r.args + 20) >> 2]!;
  }

  /** LOOKUP: [node, size] or undefined when the name does not exist. */
  lookup(parent: U64, name: string): { node: U64; size: number } | undefined {
    const r = this.send(this.rb.lookup(n64(parent), name), ENTRY_OUT_SIZE);
    if (r.error === -C.errno.ENOENT) return undefined;
    this.must(`LOOKUP ${name}`, r);
    const node = this.u64(r.args);
    if (node[0] === 0 && node[1] === 0) return undefined;
    this.looked.push(node);
    return { node, size: this.num(r.args + 40 + 8) };
  }

  dir(parent: U64, name: string): U64 {
    const found = this.lookup(parent, name);
    if (found) return found.node;
    const r = this.must(`MKDIR ${name}`, this.send(this.rb.mkdir(n64(parent), name), ENTRY_OUT_SIZE));
    const node = this.u64(r.args);
    this.looked.push(node);
    return node;
  }

  /** CREATE (O_RDWR|O_CREAT, no O_EXCL): [node, fh]. */
  create(parent: U64, name: string, flags = C.O_RDWR | C.O_CREAT): { node: U64; fh: U64 } {
    const r = this.must(`CREATE ${name}`, this.send(this.rb.create(n64(parent), name, flags, 0o100644), ENTRY_OUT_SIZE + OPEN_OUT_SIZE));
    const node = this.u64(r.args);
    this.looked.push(node);
    return { node, fh: this.u64(r.args + ENTRY_OUT_SIZE) };
  }

  open(node: U64, flags: number, op: Opcode = Opcode.Open): U64 {
    const r = this.must(Opcode[op] ?? 'OPEN', this.send(this.rb.open(n64(node), flags, op), OPEN_OUT_SIZE));
    return this.u64(r.args);
  }

  release(node: U64, fh: U64, op: Opcode = Opcode.Release): void {
    this.must(Opcode[op] ?? 'RELEASE', this.send(this.rb.release(n64(node), n64(fh), op), 0));
  }

  /** WRITE of `len` pattern bytes at `off`; returns the bytes written. */
  writePattern(node: U64, fh: U64, off: number, len: number, seed: number): number {
    const w = this.guest.slotWin(1, 0);
    this.guest.vq.patternFill(w + SLOT_DATA, len, off, seed);
    const req = this.rb.write(n64(node), n64(fh), BigInt(off), new Uint8Array(0));
    new DataView(req.buffer).setUint32(0, req.length + len, true);
    new DataView(req.buffer).setUint32(56, len, true);
    const r = this.must('WRITE', this.send(req, WRITE_OUT_SIZE, { outData: len }));
    return this.u32[r.args >> 2]!;
  }

  /** READ of len bytes at off; -1 when they hold the pattern under seed, else the first wrong byte. */
  checkPattern(node: U64, fh: U64, off: number, len: number, seed: number): number {
    const r = this.must('READ', this.send(this.rb.read(n64(node), n64(fh), BigInt(off), len), 0, { inData: len }));
    if (r.len !== len) return Math.max(0, r.len);
    return this.guest.vq.patternCheck(r.args, len, off, seed);
  }

  truncate(node: U64, size: number): void {
    this.must('SETATTR', this.send(this.rb.setattr(n64(node), { valid: FATTR_SIZE, size: BigInt(size) }), ATTR_OUT_SIZE));
  }

  /** Entries of a directory other than . and .. */
  countEntries(node: U64): number {
    const fh = this.open(node, C.O_RDONLY | C.O_DIRECTORY, Opcode.Opendir);
    // directory cookies are opaque u64s (ext4's are hashes up to 2^63): kept whole, never as a number
    let off: U64 = [0, 0];
    let n = 0;
    for (;;) {
      const r = this.must('READDIR', this.send(this.rb.readdir(n64(node), n64(fh), n64(off), 4096), 0, { inData: 4096 }));
      if (r.len === 0) break;
      let o = 0;
      while (o + 24 <= r.len) {
        const nl = this.u32[(r.args + o + 16) >> 2]!;
        const c0 = this.u8[r.args + o + 24];
        const dot = c0 === 46 && (nl === 1 || (nl === 2 && this.u8[r.args + o + 25] === 46));
        if (!dot) n++;
        off = this.u64(r.args + o + 8);
        o += (24 + nl + 7) & ~7;
      }
    }
    this.release(node, fh, Opcode.Releasedir);
    return n;
  }

  forget(node: U64, count: number): void {
    this.send(this.rb.forget(n64(node), BigInt(count)), 0, { noReply: true });
  }

  unlink(parent: U64, name: string): number {
    return this.send(this.rb.unlink(n64(parent), name), 0).error;
  }

  rmdir(parent: U64, name: string): number {
    return this.send(this.rb.rmdir(n64(parent), name), 0).error;
  }
}

export function n64(v: U64): bigint {
  return BigInt(v[0]) + (BigInt(v[1]) << 32n);
}

const ROOT: U64 = [1, 0];

export interface FixtureNeeds {
  fileBytes: number;
  entries: number;
  /** directory name for this run's create-unlink */
  scratchName: string;
}

/** Makes (or checks) the fixture and opens what the workloads use. */
export function prepareFixture(f: MainFuse, need: FixtureNeeds, chunk: number): Fixture & { top: U64 } {
  const top = f.dir(ROOT, FIXTURE_DIR);
  const { fileBytes } = need;
  const readName = `read-${fileBytes}`;
  let file = f.lookup(top, readName);
  let fileFh: U64;
  const sound = (node: U64, fh: U64): boolean => {
    const probe = Math.min(4096, fileBytes);
    return f.checkPattern(node, fh, 0, probe, FIXTURE_SEED) < 0 && f.checkPattern(node, fh, fileBytes - probe, probe, FIXTURE_SEED) < 0;
  };
  if (file && file.size === fileBytes) {
    fileFh = f.open(file.node, C.O_RDWR);
    if (!sound(file.node, fileFh)) {
      f.release(file.node, fileFh);
      file = undefined;
    }
  } else {
    file = undefined;
  }
  let node: U64;
  if (!file) {
    const c = f.create(top, readName);
    node = c.node;
    fileFh = c.fh;
    f.truncate(node, 0);
    for (let off = 0; off < fileBytes; off += chunk) {
      const len = Math.min(chunk, fileBytes - off);
      const n = f.writePattern(node, fileFh, off, len, FIXTURE_SEED);
      if (n !== len) throw new Error(`fixture: WRITE took ${n} of ${len} bytes`);
    }
  } else {
    node = file.node;
  }
  const writeName = `write-${fileBytes}`;
  const wf = f.lookup(top, writeName);
  let wfile: U64;
  let wfileFh: U64;
  if (wf) {
    wfile = wf.node;
    wfileFh = f.open(wfile, C.O_RDWR);
  } else {
    const c = f.create(top, writeName);
    wfile = c.node;
    wfileFh = c.fh;
  }
  if (wf?.size !== fileBytes) f.truncate(wfile, fileBytes);
  const treeName = `tree-${need.entries}`;
  const tree = f.dir(top, treeName);
  if (f.countEntries(tree) !== need.entries) {
    for (let i = 0; i < need.entries; i++) {
      const c = f.create(tree, `f${String(i).padStart(7, '0')}`);
      f.release(c.node, c.fh);
    }
  }
  const scratch = f.dir(top, need.scratchName);
  return { top, file: node, fileFh: fileFh!, wfile, wfileFh, tree, scratch, fileBytes, entries: need.entries, fixtureSeed: FIXTURE_SEED };
}
