/**
 * FuseClient: runs FUSE requests through an in-process FuseServer with the in-memory
 * BufferReader/BufferWriter, for unit tests. Requests are built and replies decoded by the project's
 * one FUSE builder (src/frontend/fuse-requests.ts); this adds the in-process transport and typed
 * results.
 */
import {
  CREATE_OPEN_OUT_OFFSET,
  type HeaderOverrides,
  RequestBuilder,
  decodeOpenOut,
  decodeWriteOut,
  parseReply,
} from '../../src/frontend/fuse-requests.js';
import {
  FUSE_KERNEL_MINOR_VERSION, FUSE_KERNEL_VERSION, INIT_OUT_SIZE, OUT_HEADER_SIZE, Opcode,
  decodeAttrOut, decodeDirents, decodeEntryOut, decodeInitOut, type Attr, type EntryOut, type InitOut, type SetattrIn,
} from '../../src/abi/fuse.js';
import { S_IFREG } from '../../src/abi/stat.js';
import { BufferReader, BufferWriter } from './buffer-io.js';
import type { FuseServer } from '../../src/fuse/server.js';

export { concat, cstr, le } from '../../src/frontend/fuse-requests.js';

/**
 * A request with `ext` appended as its request extensions (FUSE 7.38): the header's len and
 * total_extlen (in 8-byte units) patched; `extlen` sets a total_extlen of the test's own instead.
 */
export function withExt(req: Uint8Array, ext: Uint8Array, o: { extlen?: number } = {}): Uint8Array {
  const out = new Uint8Array(req.length + ext.length);
  out.set(req);
  out.set(ext, req.length);
  const v = new DataView(out.buffer);
  v.setUint32(0, out.length, true);
  v.setUint16(36, o.extlen ?? ext.length / 8, true);
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

export interface CallOpts extends HeaderOverrides {
  /** bytes the reply writer can take (default 1 MiB + 4 KiB) */
  capacity?: number;
}

const DEFAULT_CAPACITY = (1 << 20) + 4096;
/** O_RDWR | O_CREAT */
const O_RDWR_CREAT = 0o102;

type WithOpen = Reply & { fh?: bigint; openFlags?: number };

export class FuseClient {
  /** pid 4242: any pid, but not 1, so a test never looks like init */
  readonly rb = new RequestBuilder(0, 0, 4242);
  constructor(readonly server: FuseServer) {}

  get unique(): bigint { return this.rb.unique; }
  set unique(v: bigint) { this.rb.unique = v; }
  get uid(): number { return this.rb.uid; }
  set uid(v: number) { this.rb.uid = v; }
  get gid(): number { return this.rb.gid; }
  set gid(v: number) { this.rb.gid = v; }

  /** fuse_in_header + args (no call). */
  request(opcode: number, nodeid: bigint, args: Uint8Array, o: HeaderOverrides = {}): Uint8Array {
    return this.rb.request(opcode, nodeid, args, o);
  }

  /** Runs raw request bytes through the server. */
  raw(bytes: Uint8Array, capacity = DEFAULT_CAPACITY): Reply {
    const r = new BufferReader(bytes);
    const w = new BufferWriter(capacity);
    const ret = this.server.handle(r, w);
    if (ret < OUT_HEADER_SIZE) {
      return { ret, written: w.written, len: 0, error: 0, unique: 0n, data: new Uint8Array(0), view: new DataView(w.out.buffer) };
    }
    return { ret, written: w.written, ...parseReply(w.out) };
  }

  call(opcode: number, nodeid: bigint, args: Uint8Array, o: CallOpts = {}): Reply {
    return this.raw(this.request(opcode, nodeid, args, o), o.capacity ?? DEFAULT_CAPACITY);
  }

  init(major = FUSE_KERNEL_VERSION, minor = FUSE_KERNEL_MINOR_VERSION, flags = 0xffffffff): Reply & { init?: InitOut } {
    const r = this.raw(this.rb.init(flags, 0, major, minor));
    return r.error === 0 && r.data.length >= INIT_OUT_SIZE ? { ...r, init: decodeInitOut(r.view, 0) } : r;
  }

  entry(r: Reply): EntryOut {
    if (r.error !== 0) throw new Error(`error ${r.error}`);
    return decodeEntryOut(r.view, 0);
  }

  lookup(parent: bigint, name: string | Uint8Array): Reply {
    return this.raw(this.rb.lookup(parent, name));
  }

  getattr(nodeid: bigint): Reply & { attr?: Attr } {
    return withAttr(this.raw(this.rb.getattr(nodeid)));
  }

  setattr(nodeid: bigint, s: Partial<SetattrIn> & { valid: number }): Reply & { attr?: Attr } {
    return withAttr(this.raw(this.rb.setattr(nodeid, s)));
  }

  mkdir(parent: bigint, name: string, mode = 0o755): Reply {
    return this.raw(this.rb.mkdir(parent, name, mode));
  }

  mknod(parent: bigint, name: string, mode: number, rdev = 0): Reply {
    return this.raw(this.rb.mknod(parent, name, mode, rdev));
  }

  create(parent: bigint, name: string, flags = O_RDWR_CREAT, mode = S_IFREG | 0o644): WithOpen {
    return withOpen(this.raw(this.rb.create(parent, name, flags, mode)), CREATE_OPEN_OUT_OFFSET);
  }

  open(nodeid: bigint, flags = 0, op: number = Opcode.Open): WithOpen {
    return withOpen(this.raw(this.rb.open(nodeid, flags, op)), 0);
  }

  opendir(nodeid: bigint): WithOpen {
    return this.open(nodeid, 0, Opcode.Opendir);
  }

  write(nodeid: bigint, fh: bigint, offset: number, data: Uint8Array): Reply & { size?: number } {
    const r = this.raw(this.rb.write(nodeid, fh, BigInt(offset), data));
    return r.error === 0 ? { ...r, size: decodeWriteOut(r.view) } : r;
  }

  read(nodeid: bigint, fh: bigint, offset: number, size: number, capacity?: number): Reply {
    return this.raw(this.rb.read(nodeid, fh, BigInt(offset), size), capacity ?? DEFAULT_CAPACITY);
  }

  readdir(nodeid: bigint, fh: bigint, offset: bigint, size: number, plus = false) {
    const r = this.raw(this.rb.readdir(nodeid, fh, offset, size, plus));
    return { ...r, entries: r.error === 0 ? decodeDirents(r.data, plus) : [] };
  }

  release(nodeid: bigint, fh: bigint, op: number = Opcode.Release): Reply {
    return this.raw(this.rb.release(nodeid, fh, op));
  }

  /** FORGET has no reply: the writer gets no room. */
  forget(nodeid: bigint, nlookup: bigint): Reply {
    return this.raw(this.rb.forget(nodeid, nlookup), 0);
  }

  rename(parent: bigint, name: string, newParent: bigint, newName: string, flags?: number): Reply {
    return this.raw(this.rb.rename(parent, name, newParent, newName, flags));
  }

  symlink(parent: bigint, name: string, target: string): Reply {
    return this.raw(this.rb.symlink(parent, name, target));
  }

  readlink(nodeid: bigint): Reply {
    return this.raw(this.rb.readlink(nodeid));
  }

  link(oldNode: bigint, newParent: bigint, newName: string): Reply {
    return this.raw(this.rb.link(oldNode, newParent, newName));
  }

  unlink(parent: bigint, name: string | Uint8Array): Reply {
    return this.raw(this.rb.unlink(parent, name));
  }

  rmdir(parent: bigint, name: string): Reply {
    return this.raw(this.rb.rmdir(parent, name));
  }

  statfs(nodeid: bigint): Reply {
    return this.raw(this.rb.statfs(nodeid));
  }

  access(nodeid: bigint, mask: number, uid?: number, gid?: number): Reply {
    const o: HeaderOverrides = {};
    if (uid !== undefined) o.uid = uid;
    if (gid !== undefined) o.gid = gid;
    return this.raw(this.rb.access(nodeid, mask, o));
  }
}

function withAttr(r: Reply): Reply & { attr?: Attr } {
  return r.error === 0 ? { ...r, attr: decodeAttrOut(r.view, 0).attr } : r;
}

function withOpen(r: Reply, off: number): WithOpen {
  return r.error === 0 ? { ...r, ...decodeOpenOut(r.view, off) } : r;
}
