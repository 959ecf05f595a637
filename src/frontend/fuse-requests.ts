/**
 * FUSE requests as a guest kernel sends them, and their replies, for the frontend side (tests and
 * the load-test mode). Layouts come from src/fuse/abi.ts (linux/fuse.h).
 */
import {
  FUSE_KERNEL_MINOR_VERSION,
  FUSE_KERNEL_VERSION,
  IN_HEADER_SIZE,
  INIT_IN_SIZE,
  OUT_HEADER_SIZE,
  Opcode,
  decodeOutHeader,
  encodeInHeader,
  encodeInitIn,
  encodeReadIn,
} from '../abi/fuse.js';

export interface FuseReply {
  len: number;
  /** negative errno, 0 on success */
  error: number;
  unique: bigint;
  data: Uint8Array;
  view: DataView;
}

export class RequestBuilder {
  unique = 1n;
  constructor(public uid = 0, public gid = 0, public pid = 1) {}

  build(opcode: number, nodeid: bigint, ...args: Uint8Array[]): Uint8Array {
    const argLen = args.reduce((s, a) => s + a.length, 0);
    const buf = new Uint8Array(IN_HEADER_SIZE + argLen);
    encodeInHeader(new DataView(buf.buffer), 0, {
      len: buf.length, opcode, unique: this.unique++, nodeid, uid: this.uid, gid: this.gid, pid: this.pid, totalExtlen: 0,
    });
    let o = IN_HEADER_SIZE;
    for (const a of args) {
      buf.set(a, o);
      o += a.length;
    }
    return buf;
  }

  init(flags = 0xffffffff, flags2 = 0): Uint8Array {
    const a = new Uint8Array(INIT_IN_SIZE);
    encodeInitIn(new DataView(a.buffer), 0, { major: FUSE_KERNEL_VERSION, minor: FUSE_KERNEL_MINOR_VERSION, maxReadahead: 131072, flags, flags2 });
    return this.build(Opcode.Init, 0n, a);
  }

  lookup(parent: bigint, name: string | Uint8Array): Uint8Array {
    return this.build(Opcode.Lookup, parent, cstr(name));
  }

  getattr(nodeid: bigint): Uint8Array {
    return this.build(Opcode.Getattr, nodeid, new Uint8Array(16));
  }

  open(nodeid: bigint, flags: number, op: Opcode = Opcode.Open): Uint8Array {
    return this.build(op, nodeid, u32s(flags, 0));
  }

  create(parent: bigint, name: string, flags: number, mode: number): Uint8Array {
    return this.build(Opcode.Create, parent, u32s(flags, mode, 0o022, 0), cstr(name));
  }

  read(nodeid: bigint, fh: bigint, offset: bigint, size: number, op: Opcode = Opcode.Read): Uint8Array {
    const a = new Uint8Array(40);
    encodeReadIn(new DataView(a.buffer), 0, { fh, offset, size, readFlags: 0, lockOwner: 0n, flags: 0 });
    return this.build(op, nodeid, a);
  }

  write(nodeid: bigint, fh: bigint, offset: bigint, data: Uint8Array): Uint8Array {
    const a = new Uint8Array(40);
    encodeReadIn(new DataView(a.buffer), 0, { fh, offset, size: data.length, readFlags: 0, lockOwner: 0n, flags: 2 });
    return this.build(Opcode.Write, nodeid, a, data);
  }

  release(nodeid: bigint, fh: bigint, op: Opcode = Opcode.Release): Uint8Array {
    const a = new Uint8Array(24);
    new DataView(a.buffer).setBigUint64(0, fh, true);
    return this.build(op, nodeid, a);
  }

  forget(nodeid: bigint, nlookup: bigint): Uint8Array {
    const a = new Uint8Array(8);
    new DataView(a.buffer).setBigUint64(0, nlookup, true);
    return this.build(Opcode.Forget, nodeid, a);
  }
}

export function cstr(s: string | Uint8Array): Uint8Array {
  const b = typeof s === 'string' ? new TextEncoder().encode(s) : s;
  const out = new Uint8Array(b.length + 1);
  out.set(b);
  return out;
}

export function u32s(...v: number[]): Uint8Array {
  const a = new Uint8Array(4 * v.length);
  const dv = new DataView(a.buffer);
  v.forEach((x, i) => {
    dv.setUint32(4 * i, x >>> 0, true);
  });
  return a;
}

export function parseReply(b: Uint8Array): FuseReply {
  if (b.length < OUT_HEADER_SIZE) throw new RangeError(`reply of ${b.length} bytes`);
  const h = decodeOutHeader(new DataView(b.buffer, b.byteOffset, b.byteLength), 0);
  const data = b.slice(OUT_HEADER_SIZE, Math.min(h.len, b.length));
  return { len: h.len, error: h.error, unique: h.unique, data, view: new DataView(data.buffer) };
}
