/**
 * Test helpers for the FUSE layer: a client that builds FUSE request buffers (fuse_in_header + args),
 * runs them through a FuseServer with the in-memory BufferReader/BufferWriter, and decodes replies;
 * and MapTables, a TEST DOUBLE of the shared inode/handle tables (plain JS Maps, one thread only).
 */
import {
  FUSE_KERNEL_MINOR_VERSION, FUSE_KERNEL_VERSION, IN_HEADER_SIZE, INIT_IN_SIZE, OUT_HEADER_SIZE, Opcode,
  decodeAttrOut, decodeDirents, decodeEntryOut, decodeInitOut, decodeOutHeader, encodeInHeader, encodeInitIn,
  encodeReadIn, encodeSetattrIn, type Attr, type EntryOut, type InitOut, type SetattrIn,
} from '../../src/abi/fuse.js';
import { BufferReader, BufferWriter } from './buffer-io.js';
import type { FuseServer } from '../../src/fuse/server.js';
import type { Tables } from '../../src/fs/tables.js';

const enc = new TextEncoder();

export function cstr(s: string | Uint8Array): Uint8Array {
  const b = typeof s === 'string' ? enc.encode(s) : s;
  const out = new Uint8Array(b.length + 1);
  out.set(b);
  return out;
}

export function concat(...parts: Uint8Array[]): Uint8Array {
  const n = parts.reduce((a, p) => a + p.length, 0);
  const out = new Uint8Array(n);
  let o = 0;
  for (const p of parts) { out.set(p, o); o += p.length; }
  return out;
}

/** little-endian struct builder */
export function le(fields: Array<['u32' | 'u64' | 'u16', number | bigint]>): Uint8Array {
  const size = fields.reduce((a, [t]) => a + (t === 'u64' ? 8 : t === 'u32' ? 4 : 2), 0);
  const out = new Uint8Array(size);
  const v = new DataView(out.buffer);
  let o = 0;
  for (const [t, x] of fields) {
    if (t === 'u64') { v.setBigUint64(o, BigInt(x), true); o += 8; }
    else if (t === 'u32') { v.setUint32(o, Number(x) >>> 0, true); o += 4; }
    else { v.setUint16(o, Number(x), true); o += 2; }
  }
  return out;
}

export interface Reply {
  /** what handle() returned */
  ret: number;
  /** bytes the writer saw written */
  written: number;
  len: number;
  error: number;
  unique: bigint;
  /** payload after the out header (len - 16 bytes) */
  data: Uint8Array;
  view: DataView;
}

export interface CallOpts {
  capacity?: number;
  uid?: number;
  gid?: number;
  pid?: number;
  /** override fuse_in_header.len */
  len?: number;
  /** extra bytes in the chain beyond the request */
  pad?: number;
}

export class FuseClient {
  unique = 1n;
  uid = 0;
  gid = 0;
  constructor(readonly server: FuseServer) {}

  request(opcode: number, nodeid: bigint, args: Uint8Array, o: CallOpts = {}): Uint8Array {
    const total = IN_HEADER_SIZE + args.length;
    const buf = new Uint8Array(total + (o.pad ?? 0));
    encodeInHeader(new DataView(buf.buffer), 0, {
      len: o.len ?? total, opcode, unique: this.unique++, nodeid,
      uid: o.uid ?? this.uid, gid: o.gid ?? this.gid, pid: o.pid ?? 4242, totalExtlen: 0,
    });
    buf.set(args, IN_HEADER_SIZE);
    return buf;
  }

  raw(bytes: Uint8Array, capacity = (1 << 20) + 4096): Reply {
    const r = new BufferReader(bytes);
    const w = new BufferWriter(capacity);
    const ret = this.server.handle(r, w);
    const view = new DataView(w.out.buffer);
    if (ret < OUT_HEADER_SIZE) {
      return { ret, written: w.written, len: 0, error: 0, unique: 0n, data: new Uint8Array(0), view };
    }
    const h = decodeOutHeader(view, 0);
    const data = w.out.slice(OUT_HEADER_SIZE, h.len);
    return { ret, written: w.written, len: h.len, error: h.error, unique: h.unique, data, view: new DataView(data.buffer) };
  }

  call(opcode: number, nodeid: bigint, args: Uint8Array, o: CallOpts = {}): Reply {
    return this.raw(this.request(opcode, nodeid, args, o), o.capacity ?? (1 << 20) + 4096);
  }

  init(major = FUSE_KERNEL_VERSION, minor = FUSE_KERNEL_MINOR_VERSION, flags = 0xffffffff): Reply & { init?: InitOut } {
    const a = new Uint8Array(INIT_IN_SIZE);
    encodeInitIn(new DataView(a.buffer), 0, { major, minor, maxReadahead: 131072, flags, flags2: 0 });
    const r = this.call(Opcode.Init, 0n, a);
    return r.error === 0 && r.data.length >= 64 ? { ...r, init: decodeInitOut(r.view, 0) } : r;
  }

  entry(r: Reply): EntryOut {
    if (r.error !== 0) throw new Error(`error ${r.error}`);
    return decodeEntryOut(r.view, 0);
  }

  lookup(parent: bigint, name: string | Uint8Array): Reply {
    return this.call(Opcode.Lookup, parent, cstr(name));
  }

  getattr(nodeid: bigint): Reply & { attr?: Attr } {
    const r = this.call(Opcode.Getattr, nodeid, le([['u32', 0], ['u32', 0], ['u64', 0]]));
    return r.error === 0 ? { ...r, attr: decodeAttrOut(r.view, 0).attr } : r;
  }

  setattr(nodeid: bigint, s: Partial<SetattrIn> & { valid: number }): Reply & { attr?: Attr } {
    const a = new Uint8Array(88);
    encodeSetattrIn(new DataView(a.buffer), 0, {
      fh: 0n, size: 0n, lockOwner: 0n, atime: 0n, mtime: 0n, ctime: 0n, atimensec: 0, mtimensec: 0, ctimensec: 0,
      mode: 0, uid: 0, gid: 0, ...s,
    });
    const r = this.call(Opcode.Setattr, nodeid, a);
    return r.error === 0 ? { ...r, attr: decodeAttrOut(r.view, 0).attr } : r;
  }

  mkdir(parent: bigint, name: string, mode = 0o755): Reply {
    return this.call(Opcode.Mkdir, parent, concat(le([['u32', mode], ['u32', 0o022]]), cstr(name)));
  }

  mknod(parent: bigint, name: string, mode: number, rdev = 0): Reply {
    return this.call(Opcode.Mknod, parent, concat(le([['u32', mode], ['u32', rdev], ['u32', 0o022], ['u32', 0]]), cstr(name)));
  }

  create(parent: bigint, name: string, flags = 0o102 /* O_RDWR|O_CREAT */, mode = 0o100644): Reply & { fh?: bigint; openFlags?: number } {
    const r = this.call(Opcode.Create, parent, concat(le([['u32', flags], ['u32', mode], ['u32', 0o022], ['u32', 0]]), cstr(name)));
    return r.error === 0 ? { ...r, fh: r.view.getBigUint64(128, true), openFlags: r.view.getUint32(136, true) } : r;
  }

  open(nodeid: bigint, flags = 0, op: number = Opcode.Open): Reply & { fh?: bigint; openFlags?: number } {
    const r = this.call(op, nodeid, le([['u32', flags], ['u32', 0]]));
    return r.error === 0 ? { ...r, fh: r.view.getBigUint64(0, true), openFlags: r.view.getUint32(8, true) } : r;
  }

  opendir(nodeid: bigint): Reply & { fh?: bigint; openFlags?: number } {
    return this.open(nodeid, 0, Opcode.Opendir);
  }

  write(nodeid: bigint, fh: bigint, offset: number, data: Uint8Array): Reply & { size?: number } {
    const a = new Uint8Array(40);
    encodeReadIn(new DataView(a.buffer), 0, { fh, offset: BigInt(offset), size: data.length, readFlags: 0, lockOwner: 0n, flags: 2 });
    const r = this.call(Opcode.Write, nodeid, concat(a, data));
    return r.error === 0 ? { ...r, size: r.view.getUint32(0, true) } : r;
  }

  read(nodeid: bigint, fh: bigint, offset: number, size: number, capacity?: number): Reply {
    const a = new Uint8Array(40);
    encodeReadIn(new DataView(a.buffer), 0, { fh, offset: BigInt(offset), size, readFlags: 0, lockOwner: 0n, flags: 0 });
    return this.call(Opcode.Read, nodeid, a, capacity !== undefined ? { capacity } : {});
  }

  readdir(nodeid: bigint, fh: bigint, offset: bigint, size: number, plus = false) {
    const a = new Uint8Array(40);
    encodeReadIn(new DataView(a.buffer), 0, { fh, offset, size, readFlags: 0, lockOwner: 0n, flags: 0 });
    const r = this.call(plus ? Opcode.Readdirplus : Opcode.Readdir, nodeid, a);
    return { ...r, entries: r.error === 0 ? decodeDirents(r.data, plus) : [] };
  }

  release(nodeid: bigint, fh: bigint, op: number = Opcode.Release): Reply {
    return this.call(op, nodeid, le([['u64', fh], ['u32', 0], ['u32', 0], ['u64', 0]]));
  }

  forget(nodeid: bigint, nlookup: bigint): Reply {
    return this.call(Opcode.Forget, nodeid, le([['u64', nlookup]]), { capacity: 0 });
  }

  rename(parent: bigint, name: string, newParent: bigint, newName: string, flags?: number): Reply {
    if (flags === undefined) return this.call(Opcode.Rename, parent, concat(le([['u64', newParent]]), cstr(name), cstr(newName)));
    return this.call(Opcode.Rename2, parent, concat(le([['u64', newParent], ['u32', flags], ['u32', 0]]), cstr(name), cstr(newName)));
  }

  symlink(parent: bigint, name: string, target: string): Reply {
    return this.call(Opcode.Symlink, parent, concat(cstr(name), cstr(target)));
  }

  readlink(nodeid: bigint): Reply {
    return this.call(Opcode.Readlink, nodeid, new Uint8Array(0));
  }

  link(oldNode: bigint, newParent: bigint, newName: string): Reply {
    return this.call(Opcode.Link, newParent, concat(le([['u64', oldNode]]), cstr(newName)));
  }

  unlink(parent: bigint, name: string | Uint8Array): Reply {
    return this.call(Opcode.Unlink, parent, cstr(name));
  }

  rmdir(parent: bigint, name: string): Reply {
    return this.call(Opcode.Rmdir, parent, cstr(name));
  }

  statfs(nodeid: bigint): Reply {
    return this.call(Opcode.Statfs, nodeid, new Uint8Array(0));
  }

  access(nodeid: bigint, mask: number, uid?: number, gid?: number): Reply {
    const o: CallOpts = {};
    if (uid !== undefined) o.uid = uid;
    if (gid !== undefined) o.gid = gid;
    return this.call(Opcode.Access, nodeid, le([['u32', mask], ['u32', 0]]), o);
  }
}

/** TEST DOUBLE of the AssemblyScript inode/handle tables (src/fs/tables.ts), same contract, JS Maps. */
export class MapTables implements Tables {
  private inodes = new Map<bigint, { fd: number; key: string; nlookup: bigint; pins: number; forgotten: boolean }>();
  private byKey = new Map<string, bigint>();
  private handles = new Map<bigint, { fd: number; pins: number; closed: boolean }>();
  private nextSlot = 2n;
  private nextFh = 1n;
  private existed = 0;
  private drain: number[] = [];

  inodeInit(rootFd: number, dev: bigint, ino: bigint): void {
    this.inodes.clear(); this.byKey.clear();
    const key = `${dev}:${ino}`;
    this.inodes.set(1n, { fd: rootFd, key, nlookup: 1n, pins: 0, forgotten: false });
    this.byKey.set(key, 1n);
  }
  inodeLookup(dev: bigint, ino: bigint, fd: number): bigint {
    const key = `${dev}:${ino}`;
    const id = this.byKey.get(key);
    if (id !== undefined) {
      const e = this.inodes.get(id)!;
      if (id !== 1n) e.nlookup++;
      this.existed = 1;
      return id;
    }
    const nid = (7n << 32n) | this.nextSlot++;
    this.inodes.set(nid, { fd, key, nlookup: 1n, pins: 0, forgotten: false });
    this.byKey.set(key, nid);
    this.existed = 0;
    return nid;
  }
  inodeLastExisted(): number { return this.existed; }
  inodeDev(nodeid: bigint): bigint {
    const e = this.inodes.get(nodeid);
    return e && !e.forgotten ? BigInt(e.key.split(':')[0]!) : 0n;
  }
  inodeAcquire(nodeid: bigint): number {
    const e = this.inodes.get(nodeid);
    if (!e || e.forgotten) return -1;
    e.pins++;
    return e.fd;
  }
  inodeRelease(nodeid: bigint): number {
    const e = this.inodes.get(nodeid);
    if (!e || e.pins === 0) return -1;
    e.pins--;
    if (e.pins === 0 && e.forgotten) { this.inodes.delete(nodeid); return e.fd; }
    return -1;
  }
  inodeForget(nodeid: bigint, nlookup: bigint): number {
    const e = this.inodes.get(nodeid);
    if (!e || nodeid === 1n || e.forgotten) return -1;
    e.nlookup = nlookup >= e.nlookup ? 0n : e.nlookup - nlookup;
    if (e.nlookup > 0n) return -1;
    this.byKey.delete(e.key);
    e.forgotten = true;
    if (e.pins > 0) return -1;
    this.inodes.delete(nodeid);
    return e.fd;
  }
  inodeDropAll(): void {
    for (const [id, e] of this.inodes) {
      if (id === 1n) continue;
      this.byKey.delete(e.key);
      e.forgotten = true;
      if (e.pins === 0) { this.inodes.delete(id); this.drain.push(e.fd); }
    }
  }
  inodeDrainNext(): number { return this.drain.shift() ?? -1; }
  inodeCount(): number { return this.inodes.size; }
  /** test-only: the lookup count of a node id (undefined if unknown) */
  nlookup(nodeid: bigint): bigint | undefined { return this.inodes.get(nodeid)?.nlookup; }

  handleOpen(fd: number): bigint {
    const fh = (3n << 32n) | this.nextFh++;
    this.handles.set(fh, { fd, pins: 0, closed: false });
    return fh;
  }
  handleAcquire(fh: bigint): number {
    const h = this.handles.get(fh);
    if (!h || h.closed) return -1;
    h.pins++;
    return h.fd;
  }
  handleRelease(fh: bigint): number {
    const h = this.handles.get(fh);
    if (!h || h.pins === 0) return -1;
    h.pins--;
    if (h.pins === 0 && h.closed) { this.handles.delete(fh); return h.fd; }
    return -1;
  }
  handleClose(fh: bigint): number {
    const h = this.handles.get(fh);
    if (!h || h.closed) return -2;
    if (h.pins > 0) { h.closed = true; return -1; }
    this.handles.delete(fh);
    return h.fd;
  }
  handleDrainNext(): number {
    for (const [fh, h] of this.handles) {
      if (h.closed) continue;
      if (h.pins > 0) { h.closed = true; continue; }
      this.handles.delete(fh);
      return h.fd;
    }
    return -1;
  }
  handleCount(): number { return this.handles.size; }
}
