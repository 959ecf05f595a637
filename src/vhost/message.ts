/**
 * vhost-user wire format (QEMU docs/interop/vhost-user.rst). Names follow the spec's
 * "Front-end message types"; QEMU 7.2 still calls BACKEND "SLAVE".
 *
 * Every message is a 12-byte header {u32 request, u32 flags, u32 size} and `size` bytes of payload,
 * all little endian. File descriptors travel as SCM_RIGHTS ancillary data with the header.
 */
import { VhostUserProtocolError } from '../errors.js';

export enum FrontendReq {
  GET_FEATURES = 1,
  SET_FEATURES = 2,
  SET_OWNER = 3,
  RESET_OWNER = 4,
  SET_MEM_TABLE = 5,
  SET_LOG_BASE = 6,
  SET_LOG_FD = 7,
  SET_VRING_NUM = 8,
  SET_VRING_ADDR = 9,
  SET_VRING_BASE = 10,
  GET_VRING_BASE = 11,
  SET_VRING_KICK = 12,
  SET_VRING_CALL = 13,
  SET_VRING_ERR = 14,
  GET_PROTOCOL_FEATURES = 15,
  SET_PROTOCOL_FEATURES = 16,
  GET_QUEUE_NUM = 17,
  SET_VRING_ENABLE = 18,
  SEND_RARP = 19,
  NET_SET_MTU = 20,
  SET_BACKEND_REQ_FD = 21,
  IOTLB_MSG = 22,
  SET_VRING_ENDIAN = 23,
  GET_CONFIG = 24,
  SET_CONFIG = 25,
  CREATE_CRYPTO_SESSION = 26,
  CLOSE_CRYPTO_SESSION = 27,
  POSTCOPY_ADVISE = 28,
  POSTCOPY_LISTEN = 29,
  POSTCOPY_END = 30,
  GET_INFLIGHT_FD = 31,
  SET_INFLIGHT_FD = 32,
  GPU_SET_SOCKET = 33,
  RESET_DEVICE = 34,
  VRING_KICK = 35,
  GET_MAX_MEM_SLOTS = 36,
  ADD_MEM_REG = 37,
  REM_MEM_REG = 38,
  SET_STATUS = 39,
  GET_STATUS = 40,
  GET_SHARED_OBJECT = 41,
  SET_DEVICE_STATE_FD = 42,
  CHECK_DEVICE_STATE = 43,
}

export function reqName(req: number): string {
  return FrontendReq[req] ?? `UNKNOWN(${req})`;
}

/** Header flags: bits 0-1 version (must be 1), bit 2 reply, bit 3 need_reply. */
export const VHOST_USER_VERSION = 0x1;
export const VHOST_USER_VERSION_MASK = 0x3;
export const VHOST_USER_REPLY_MASK = 0x4;
export const VHOST_USER_NEED_REPLY_MASK = 0x8;

export const HEADER_SIZE = 12;
/** No front-end message we accept is larger (SET_MEM_TABLE: 8 + 8 × 32; GET_CONFIG: 12 + 256). */
export const MAX_PAYLOAD_SIZE = 4096;
/** VHOST_MEMORY_BASELINE_NREGIONS: SET_MEM_TABLE carries at most this many regions (and fds). */
export const VHOST_MEMORY_BASELINE_NREGIONS = 8;

/** Virtio feature bits (virtio 1.1 §6) and the vhost-user one. */
export const VIRTIO_RING_F_INDIRECT_DESC = 28n;
export const VIRTIO_RING_F_EVENT_IDX = 29n;
export const VHOST_USER_F_PROTOCOL_FEATURES = 30n;
export const VIRTIO_F_VERSION_1 = 32n;

/** Protocol feature bits (vhost-user.rst "Protocol features"). */
export enum ProtocolFeature {
  MQ = 0,
  LOG_SHMFD = 1,
  RARP = 2,
  REPLY_ACK = 3,
  MTU = 4,
  BACKEND_REQ = 5,
  CROSS_ENDIAN = 6,
  CRYPTO_SESSION = 7,
  PAGEFAULT = 8,
  CONFIG = 9,
  BACKEND_SEND_FD = 10,
  HOST_NOTIFIER = 11,
  INFLIGHT_SHMFD = 12,
  RESET_DEVICE = 13,
  INBAND_NOTIFICATIONS = 14,
  CONFIGURE_MEM_SLOTS = 15,
  STATUS = 16,
}

/** SET_VRING_KICK/CALL/ERR payload: bits 0-7 the queue index, bit 8 "no fd" (polling mode). */
export const VHOST_USER_VRING_IDX_MASK = 0xffn;
export const VHOST_USER_VRING_NOFD_MASK = 0x100n;

export interface Header {
  request: number;
  flags: number;
  size: number;
}

export interface Message extends Header {
  payload: Buffer;
  /** Descriptors that came with the header. The handler owns them: it keeps or closes each. */
  fds: number[];
}

export interface MemoryRegion {
  guestPhysAddr: bigint;
  memorySize: bigint;
  userspaceAddr: bigint;
  mmapOffset: bigint;
}

export interface VringAddr {
  index: number;
  flags: number;
  descUserAddr: bigint;
  usedUserAddr: bigint;
  availUserAddr: bigint;
  logGuestAddr: bigint;
}

export function parseHeader(b: Buffer): Header {
  return { request: b.readUInt32LE(0), flags: b.readUInt32LE(4), size: b.readUInt32LE(8) };
}

export function encodeHeader(request: number, flags: number, size: number): Buffer {
  const b = Buffer.alloc(HEADER_SIZE);
  b.writeUInt32LE(request, 0);
  b.writeUInt32LE(flags, 4);
  b.writeUInt32LE(size, 8);
  return b;
}

/** Checks the payload is exactly `n` bytes: the spec gives every request a fixed payload type. */
export function expectSize(m: Message, n: number): void {
  if (m.payload.length !== n) {
    throw new VhostUserProtocolError(`${reqName(m.request)}: payload is ${m.payload.length} bytes, expected ${n}`);
  }
}

export function readU64(m: Message): bigint {
  expectSize(m, 8);
  return m.payload.readBigUInt64LE(0);
}

/** struct vhost_vring_state {unsigned int index; unsigned int num;} */
export function readVringState(m: Message): { index: number; num: number } {
  expectSize(m, 8);
  return { index: m.payload.readUInt32LE(0), num: m.payload.readUInt32LE(4) };
}

/** struct vhost_vring_addr: index, flags, desc, used, avail, log (note: used comes before avail). */
export function readVringAddr(m: Message): VringAddr {
  expectSize(m, 40);
  const p = m.payload;
  return {
    index: p.readUInt32LE(0),
    flags: p.readUInt32LE(4),
    descUserAddr: p.readBigUInt64LE(8),
    usedUserAddr: p.readBigUInt64LE(16),
    availUserAddr: p.readBigUInt64LE(24),
    logGuestAddr: p.readBigUInt64LE(32),
  };
}

function readRegion(p: Buffer, off: number): MemoryRegion {
  return {
    guestPhysAddr: p.readBigUInt64LE(off),
    memorySize: p.readBigUInt64LE(off + 8),
    userspaceAddr: p.readBigUInt64LE(off + 16),
    mmapOffset: p.readBigUInt64LE(off + 24),
  };
}

/** SET_MEM_TABLE: {u32 nregions; u32 padding; region[nregions]}, one fd per region. */
export function readMemTable(m: Message): MemoryRegion[] {
  if (m.payload.length < 8) throw new VhostUserProtocolError('SET_MEM_TABLE: short payload');
  const n = m.payload.readUInt32LE(0);
  if (n === 0 || n > VHOST_MEMORY_BASELINE_NREGIONS) {
    throw new VhostUserProtocolError(`SET_MEM_TABLE: ${n} regions (1..${VHOST_MEMORY_BASELINE_NREGIONS} allowed)`);
  }
  expectSize(m, 8 + n * 32);
  if (m.fds.length !== n) {
    throw new VhostUserProtocolError(`SET_MEM_TABLE: ${n} regions but ${m.fds.length} fds`);
  }
  const out: MemoryRegion[] = [];
  for (let i = 0; i < n; i++) out.push(readRegion(m.payload, 8 + i * 32));
  return out;
}

/** ADD_MEM_REG / REM_MEM_REG: {u64 padding; region}. */
export function readSingleRegion(m: Message): MemoryRegion {
  expectSize(m, 40);
  return readRegion(m.payload, 8);
}

export function u64Payload(v: bigint): Buffer {
  const b = Buffer.alloc(8);
  b.writeBigUInt64LE(v);
  return b;
}

export function vringStatePayload(index: number, num: number): Buffer {
  const b = Buffer.alloc(8);
  b.writeUInt32LE(index, 0);
  b.writeUInt32LE(num, 4);
  return b;
}
