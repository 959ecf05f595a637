/**
 * The FUSE requests a workload sends, as request templates and chain shapes. A Linux guest's
 * virtio-fs driver puts the fuse_in_header and each argument in a buffer of its own, then the data
 * pages (4 KiB each) of a WRITE; the reply gets the fuse_out_header, each reply argument, then the data
 * pages of a READ/READDIR (fs/fuse/virtio_fs.c, sg_init_fuse_args). Shapes follow that layout; without
 * indirect descriptors the data is one buffer so a request fits a few ring descriptors.
 *
 * Both the main thread (which writes the shape table into the module's memory) and the driver threads
 * (which lay out chains by shape id) build the same list from the same plan, so ids agree.
 */
import {
  CREATE_IN_SIZE,
  ENTRY_OUT_SIZE,
  FLUSH_IN_SIZE,
  FORGET_IN_SIZE,
  GETATTR_IN_SIZE,
  IN_HEADER_SIZE,
  OPEN_IN_SIZE,
  OPEN_OUT_SIZE,
  OUT_HEADER_SIZE,
  Opcode,
  ATTR_OUT_SIZE,
  READ_IN_SIZE,
  RELEASE_IN_SIZE,
  WRITE_IN_SIZE,
  WRITE_OUT_SIZE,
} from '../abi/fuse.js';
import { VIRTQ_DESC_F_WRITE } from '../abi/virtio.js';
import type { VqExports } from '../virtio/wasm.js';
import { SLOT_DATA, SLOT_REPLY, SLOT_REQ } from './guest.js';

const PAGE = 4096;
/** READDIR asks for one page, as the kernel does */
export const READDIR_BYTES = 4096;
/** the names of created, looked-up and missing entries: a letter and seven digits */
export const NAME_LEN = 8;

/** Which request a step sends. */
export enum StepKind {
  Read,
  Write,
  Getattr,
  Lookup,
  Create,
  Release,
  Unlink,
  Forget,
  Open,
  Flush,
  Opendir,
  Readdir,
  Releasedir,
}

export interface Step {
  kind: StepKind;
  opcode: Opcode;
  /** shape id in the module's shape table */
  shape: number;
  /** argument bytes after fuse_in_header (not counting data) */
  argBytes: number;
  /** fuse_in_header.len */
  reqLen: number;
  /** bytes of the writable buffers (0: FORGET, which gets no reply) */
  replyCap: number;
  /** reply argument bytes after fuse_out_header (not counting data) */
  replyArgs: number;
}

interface Spec {
  kind: StepKind;
  opcode: Opcode;
  outArgs: number[];
  outData: number;
  inArgs: number[];
  inData: number;
}

/** Every step kind, with its argument and reply layout for a transfer size of bs. */
function specs(bs: number): Spec[] {
  const s = (kind: StepKind, opcode: Opcode, outArgs: number[], inArgs: number[], outData = 0, inData = 0): Spec => ({ kind, opcode, outArgs, outData, inArgs, inData });
  return [
    s(StepKind.Read, Opcode.Read, [READ_IN_SIZE], [], 0, bs),
    s(StepKind.Write, Opcode.Write, [WRITE_IN_SIZE], [WRITE_OUT_SIZE], bs),
    s(StepKind.Getattr, Opcode.Getattr, [GETATTR_IN_SIZE], [ATTR_OUT_SIZE]),
    s(StepKind.Lookup, Opcode.Lookup, [NAME_LEN + 1], [ENTRY_OUT_SIZE]),
    s(StepKind.Create, Opcode.Create, [CREATE_IN_SIZE, NAME_LEN + 1], [ENTRY_OUT_SIZE, OPEN_OUT_SIZE]),
    s(StepKind.Release, Opcode.Release, [RELEASE_IN_SIZE], []),
    s(StepKind.Unlink, Opcode.Unlink, [NAME_LEN + 1], []),
    s(StepKind.Forget, Opcode.Forget, [FORGET_IN_SIZE], []),
    s(StepKind.Open, Opcode.Open, [OPEN_IN_SIZE], [OPEN_OUT_SIZE]),
    s(StepKind.Flush, Opcode.Flush, [FLUSH_IN_SIZE], []),
    s(StepKind.Opendir, Opcode.Opendir, [OPEN_IN_SIZE], [OPEN_OUT_SIZE]),
    s(StepKind.Readdir, Opcode.Readdir, [READ_IN_SIZE], [], 0, READDIR_BYTES),
    s(StepKind.Releasedir, Opcode.Releasedir, [RELEASE_IN_SIZE], []),
  ];
}

interface Seg {
  off: number;
  len: number;
  write: boolean;
}

function segments(sp: Spec, pages: boolean): Seg[] {
  const segs: Seg[] = [{ off: SLOT_REQ, len: IN_HEADER_SIZE, write: false }];
  let o = SLOT_REQ + IN_HEADER_SIZE;
  for (const a of sp.outArgs) {
    segs.push({ off: o, len: a, write: false });
    o += a;
  }
  const data = (len: number, write: boolean): void => {
    if (!pages) {
      segs.push({ off: SLOT_DATA, len, write });
      return;
    }
    for (let p = 0; p < len; p += PAGE) segs.push({ off: SLOT_DATA + p, len: Math.min(PAGE, len - p), write });
  };
  if (sp.outData > 0) data(sp.outData, false);
  // FORGET gets no reply at all: no writable buffer, not even a header (fuse_forget has no reply).
  if (sp.opcode === Opcode.Forget) return segs;
  segs.push({ off: SLOT_REPLY, len: OUT_HEADER_SIZE, write: true });
  o = SLOT_REPLY + OUT_HEADER_SIZE;
  for (const a of sp.inArgs) {
    segs.push({ off: o, len: a, write: true });
    o += a;
  }
  if (sp.inData > 0) data(sp.inData, true);
  return segs;
}

/** The steps for transfer size bs, by kind (index = StepKind). */
export function buildSteps(bs: number): Step[] {
  return specs(bs).map((sp, i) => {
    const argBytes = sp.outArgs.reduce((a, b) => a + b, 0);
    const replyArgs = sp.inArgs.reduce((a, b) => a + b, 0);
    return {
      kind: sp.kind,
      opcode: sp.opcode,
      shape: i,
      argBytes,
      reqLen: IN_HEADER_SIZE + argBytes + sp.outData,
      replyCap: sp.opcode === Opcode.Forget ? 0 : OUT_HEADER_SIZE + replyArgs + sp.inData,
      replyArgs,
    };
  });
}

/** Ring descriptors the largest request needs without indirect descriptors. */
export function directDescsNeeded(bs: number): number {
  return Math.max(...specs(bs).map((sp) => segments(sp, false).length));
}

/** Writes the shape table (assembly/driver.ts) for transfer size bs into the module's memory. */
export function writeShapes(vq: VqExports, memory: WebAssembly.Memory, bs: number, pages: boolean): void {
  const L = vq.layout;
  const all = specs(bs);
  if (all.length > L.DRV_MAX_SHAPES) throw new RangeError('too many shapes');
  for (const [i, sp] of all.entries()) {
    const segs = segments(sp, pages);
    if (segs.length > L.DRV_SHAPE_MAX_SEGS) throw new RangeError(`a request of ${segs.length} buffers (bs too large)`);
    const u32 = new Uint32Array(memory.buffer, L.DRV_SHAPES + i * L.DRV_SHAPE_STRIDE, 4 + 3 * segs.length);
    const argBytes = sp.outArgs.reduce((a, b) => a + b, 0);
    const replyArgs = sp.inArgs.reduce((a, b) => a + b, 0);
    u32[0] = segs.length;
    u32[1] = SLOT_REPLY;
    u32[2] = OUT_HEADER_SIZE + replyArgs + sp.inData;
    u32[3] = IN_HEADER_SIZE + argBytes + sp.outData;
    segs.forEach((s, k) => {
      u32[4 + 3 * k] = s.off;
      u32[5 + 3 * k] = s.len;
      u32[6 + 3 * k] = s.write ? VIRTQ_DESC_F_WRITE : 0;
    });
  }
}
