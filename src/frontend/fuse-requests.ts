/**
 * FUSE requests as a guest kernel sends them, and their replies, for the driver side: the one request
 * builder and reply decoder of the project (the load-test frontend, the benches, the integration
 * tests over a vhost-user session and the unit tests' in-process FuseClient all use it). Layouts come
 * from src/abi/fuse.ts (linux/fuse.h); the small fixed structs fuse.h has no codec for there are
 * spelled out field by field with `le()`, sized by its *_IN_SIZE constants.
 */
import {
  ACCESS_IN_SIZE,
  CREATE_IN_SIZE,
  ENTRY_OUT_SIZE,
  FLUSH_IN_SIZE,
  FORGET_IN_SIZE,
  FUSE_KERNEL_MINOR_VERSION,
  FUSE_KERNEL_VERSION,
  GETATTR_IN_SIZE,
  IN_HEADER_SIZE,
  INIT_IN_SIZE,
  LINK_IN_SIZE,
  MKDIR_IN_SIZE,
  MKNOD_IN_SIZE,
  OPEN_IN_SIZE,
  OUT_HEADER_SIZE,
  Opcode,
  READ_IN_SIZE,
  RELEASE_IN_SIZE,
  RENAME2_IN_SIZE,
  RENAME_IN_SIZE,
  SETATTR_IN_SIZE,
  type SetattrIn,
  decodeOutHeader,
  encodeInHeader,
  encodeInitIn,
  encodeReadIn,
  encodeSetattrIn,
} from '../abi/fuse.js';

// ---------------------------------------------------------------------------------------------
// Byte helpers

const enc = new TextEncoder();

/** A NUL-terminated name, as FUSE carries every name and path. */
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
  for (const p of parts) {
    out.set(p, o);
    o += p.length;
  }
  return out;
}

/** A little-endian struct from typed fields, in order (FUSE is little-endian on virtio-fs). */
export function le(fields: Array<['u32' | 'u64' | 'u16', number | bigint]>): Uint8Array {
  const size = fields.reduce((a, [t]) => a + (t === 'u64' ? 8 : t === 'u32' ? 4 : 2), 0);
  const out = new Uint8Array(size);
  const v = new DataView(out.buffer);
  let o = 0;
  for (const [t, x] of fields) {
    if (t === 'u64') {
      v.setBigUint64(o, BigInt(x), true);
      o += 8;
    } else if (t === 'u32') {
      v.setUint32(o, Number(x) >>> 0, true);
      o += 4;
    } else {
      v.setUint16(o, Number(x), true);
      o += 2;
    }
  }
  return out;
}

/** Consecutive little-endian u32s. */
export function u32s(...v: number[]): Uint8Array {
  return le(v.map((x): ['u32', number] => ['u32', x]));
}

/** Consecutive little-endian u64s (wrapping modulo 2^64, so a test can write -1n). */
export function u64s(...v: bigint[]): Uint8Array {
  return le(v.map((x): ['u64', bigint] => ['u64', x]));
}

/** A fixed-size struct: `le(fields)`, checked against the size fuse.h gives it. */
function struct(size: number, fields: Array<['u32' | 'u64' | 'u16', number | bigint]>): Uint8Array {
  const b = le(fields);
  if (b.length !== size) throw new Error(`struct of ${b.length} bytes where fuse.h has ${size}`);
  return b;
}

/** The umask a guest's requests carry (the kernel sends the caller's; 022 is the common one). */
const UMASK = 0o022;
/** fuse_write_in.flags / fuse_read_in.flags carry the file's open flags: O_RDWR for writes. */
const O_RDWR = 2;

// ---------------------------------------------------------------------------------------------
// Requests

/** fuse_in_header fields a request may override (hostile tests lie about len; pad adds bytes past it). */
export interface HeaderOverrides {
  uid?: number;
  gid?: number;
  pid?: number;
  /** fuse_in_header.len (default: the real length) */
  len?: number;
  /** extra zero bytes after the request, beyond len */
  pad?: number;
}

export class RequestBuilder {
  unique = 1n;
  constructor(
    public uid = 0,
    public gid = 0,
    public pid = 1,
  ) {}

  /** fuse_in_header + args, with optional header overrides. */
  request(opcode: number, nodeid: bigint, args: Uint8Array, o: HeaderOverrides = {}): Uint8Array {
    const total = IN_HEADER_SIZE + args.length;
    const buf = new Uint8Array(total + (o.pad ?? 0));
    encodeInHeader(new DataView(buf.buffer), 0, {
      len: o.len ?? total,
      opcode,
      unique: this.unique++,
      nodeid,
      uid: o.uid ?? this.uid,
      gid: o.gid ?? this.gid,
      pid: o.pid ?? this.pid,
      totalExtlen: 0,
    });
    buf.set(args, IN_HEADER_SIZE);
    return buf;
  }

  /** fuse_in_header + the args, concatenated. */
  build(opcode: number, nodeid: bigint, ...args: Uint8Array[]): Uint8Array {
    return this.request(opcode, nodeid, concat(...args));
  }

  init(flags = 0xffffffff, flags2 = 0, major = FUSE_KERNEL_VERSION, minor = FUSE_KERNEL_MINOR_VERSION): Uint8Array {
    const a = new Uint8Array(INIT_IN_SIZE);
    encodeInitIn(new DataView(a.buffer), 0, { major, minor, maxReadahead: 131072, flags, flags2 });
    return this.build(Opcode.Init, 0n, a);
  }

  lookup(parent: bigint, name: string | Uint8Array): Uint8Array {
    return this.build(Opcode.Lookup, parent, cstr(name));
  }

  /** fuse_getattr_in: getattr_flags, dummy, fh (no FUSE_GETATTR_FH: by node). */
  getattr(nodeid: bigint): Uint8Array {
    return this.build(Opcode.Getattr, nodeid, struct(GETATTR_IN_SIZE, [['u32', 0], ['u32', 0], ['u64', 0]]));
  }

  setattr(nodeid: bigint, s: Partial<SetattrIn> & { valid: number }): Uint8Array {
    const a = new Uint8Array(SETATTR_IN_SIZE);
    encodeSetattrIn(new DataView(a.buffer), 0, {
      fh: 0n, size: 0n, lockOwner: 0n, atime: 0n, mtime: 0n, ctime: 0n, atimensec: 0, mtimensec: 0, ctimensec: 0,
      mode: 0, uid: 0, gid: 0, ...s,
    });
    return this.build(Opcode.Setattr, nodeid, a);
  }

  /** fuse_mkdir_in: mode, umask; name. */
  mkdir(parent: bigint, name: string, mode = 0o755): Uint8Array {
    return this.build(Opcode.Mkdir, parent, struct(MKDIR_IN_SIZE, [['u32', mode], ['u32', UMASK]]), cstr(name));
  }

  /** fuse_mknod_in: mode, rdev, umask, padding; name. */
  mknod(parent: bigint, name: string, mode: number, rdev = 0): Uint8Array {
    return this.build(Opcode.Mknod, parent, struct(MKNOD_IN_SIZE, [['u32', mode], ['u32', rdev], ['u32', UMASK], ['u32', 0]]), cstr(name));
  }

  /** fuse_create_in: flags, mode, umask, open_flags; name. */
  create(parent: bigint, name: string | Uint8Array, flags: number, mode: number): Uint8Array {
    return this.build(Opcode.Create, parent, struct(CREATE_IN_SIZE, [['u32', flags], ['u32', mode], ['u32', UMASK], ['u32', 0]]), cstr(name));
  }

  /** fuse_open_in: flags, open_flags (OPEN or OPENDIR). */
  open(nodeid: bigint, flags: number, op: Opcode = Opcode.Open): Uint8Array {
    return this.build(op, nodeid, struct(OPEN_IN_SIZE, [['u32', flags], ['u32', 0]]));
  }

  read(nodeid: bigint, fh: bigint, offset: bigint, size: number, op: Opcode = Opcode.Read): Uint8Array {
    const a = new Uint8Array(READ_IN_SIZE);
    encodeReadIn(new DataView(a.buffer), 0, { fh, offset, size, readFlags: 0, lockOwner: 0n, flags: 0 });
    return this.build(op, nodeid, a);
  }

  readdir(nodeid: bigint, fh: bigint, offset: bigint, size: number, plus = false): Uint8Array {
    return this.read(nodeid, fh, offset, size, plus ? Opcode.Readdirplus : Opcode.Readdir);
  }

  write(nodeid: bigint, fh: bigint, offset: bigint, data: Uint8Array): Uint8Array {
    const a = new Uint8Array(READ_IN_SIZE);
    encodeReadIn(new DataView(a.buffer), 0, { fh, offset, size: data.length, readFlags: 0, lockOwner: 0n, flags: O_RDWR });
    return this.build(Opcode.Write, nodeid, a, data);
  }

  /** fuse_flush_in: fh, unused, padding, lock_owner. */
  flush(nodeid: bigint, fh: bigint): Uint8Array {
    return this.build(Opcode.Flush, nodeid, struct(FLUSH_IN_SIZE, [['u64', fh], ['u32', 0], ['u32', 0], ['u64', 0]]));
  }

  /** fuse_release_in: fh, flags, release_flags, lock_owner (RELEASE or RELEASEDIR). */
  release(nodeid: bigint, fh: bigint, op: Opcode = Opcode.Release): Uint8Array {
    return this.build(op, nodeid, struct(RELEASE_IN_SIZE, [['u64', fh], ['u32', 0], ['u32', 0], ['u64', 0]]));
  }

  /** fuse_forget_in: nlookup (no reply). */
  forget(nodeid: bigint, nlookup: bigint): Uint8Array {
    return this.build(Opcode.Forget, nodeid, struct(FORGET_IN_SIZE, [['u64', nlookup]]));
  }

  /** RENAME (fuse_rename_in: newdir) or, with flags, RENAME2 (fuse_rename2_in: newdir, flags, padding); both names. */
  rename(parent: bigint, name: string, newParent: bigint, newName: string, flags?: number): Uint8Array {
    if (flags === undefined) return this.build(Opcode.Rename, parent, struct(RENAME_IN_SIZE, [['u64', newParent]]), cstr(name), cstr(newName));
    return this.build(Opcode.Rename2, parent, struct(RENAME2_IN_SIZE, [['u64', newParent], ['u32', flags], ['u32', 0]]), cstr(name), cstr(newName));
  }

  symlink(parent: bigint, name: string, target: string): Uint8Array {
    return this.build(Opcode.Symlink, parent, cstr(name), cstr(target));
  }

  readlink(nodeid: bigint): Uint8Array {
    return this.build(Opcode.Readlink, nodeid);
  }

  /** fuse_link_in: oldnodeid; the new name, under the request's node. */
  link(oldNode: bigint, newParent: bigint, newName: string): Uint8Array {
    return this.build(Opcode.Link, newParent, struct(LINK_IN_SIZE, [['u64', oldNode]]), cstr(newName));
  }

  unlink(parent: bigint, name: string | Uint8Array): Uint8Array {
    return this.build(Opcode.Unlink, parent, cstr(name));
  }

  rmdir(parent: bigint, name: string): Uint8Array {
    return this.build(Opcode.Rmdir, parent, cstr(name));
  }

  statfs(nodeid: bigint): Uint8Array {
    return this.build(Opcode.Statfs, nodeid);
  }

  /** fuse_access_in: mask, padding; the caller's credentials are the header's. */
  access(nodeid: bigint, mask: number, hdr: HeaderOverrides = {}): Uint8Array {
    return this.request(Opcode.Access, nodeid, struct(ACCESS_IN_SIZE, [['u32', mask], ['u32', 0]]), hdr);
  }
}

// ---------------------------------------------------------------------------------------------
// Replies

export interface FuseReply {
  len: number;
  /** negative errno, 0 on success */
  error: number;
  unique: bigint;
  /** the payload after fuse_out_header, up to len */
  data: Uint8Array;
  view: DataView;
}

export function parseReply(b: Uint8Array): FuseReply {
  if (b.length < OUT_HEADER_SIZE) throw new RangeError(`reply of ${b.length} bytes`);
  const h = decodeOutHeader(new DataView(b.buffer, b.byteOffset, b.byteLength), 0);
  const data = b.slice(OUT_HEADER_SIZE, Math.min(h.len, b.length));
  return { len: h.len, error: h.error, unique: h.unique, data, view: new DataView(data.buffer) };
}

export interface OpenOut {
  fh: bigint;
  openFlags: number;
}

/** fuse_open_out (fh, open_flags, padding) at `off`: OPEN/OPENDIR replies at 0, CREATE after its fuse_entry_out. */
export function decodeOpenOut(v: DataView, off = 0): OpenOut {
  return { fh: v.getBigUint64(off, true), openFlags: v.getUint32(off + 8, true) };
}

/** Where fuse_open_out starts in a CREATE reply. */
export const CREATE_OPEN_OUT_OFFSET = ENTRY_OUT_SIZE;

/** fuse_write_out.size: the bytes a WRITE took. */
export function decodeWriteOut(v: DataView): number {
  return v.getUint32(0, true);
}
