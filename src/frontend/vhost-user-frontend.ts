/**
 * A vhost-user *frontend* (the part QEMU plays): connects to a backend's socket, negotiates, hands over
 * guest memory (a memfd) and vrings. Used by the integration tests and the load-test mode to drive any
 * vhost-user-fs backend, ours or the reference one, without a VM.
 *
 * The socket is blocking and every call is synchronous: a frontend request is a round trip anyway,
 * and the backend is another process.
 */
import { FrontendError } from '../errors.js';
import { native } from '../native.js';
import {
  FrontendReq,
  HEADER_SIZE,
  type MemoryRegion,
  VHOST_USER_NEED_REPLY_MASK,
  VHOST_USER_REPLY_MASK,
  VHOST_USER_VERSION,
  encodeHeader,
  parseHeader,
  reqName,
  u64Payload,
  vringStatePayload,
} from '../vhost/message.js';

const REPLY_ACK_BIT = 1n << 3n;

export class VhostUserFrontend {
  private replyAck = false;
  /** how long a reply may take before the backend is declared stuck (undefined: wait forever) */
  replyTimeoutMs: number | undefined;
  private constructor(readonly fd: number) {}

  static connect(path: string, replyTimeoutMs?: number): VhostUserFrontend {
    const fd = native.connectUnix(path);
    if (fd < 0) throw new FrontendError(`connect ${path}: errno ${-fd}`, -fd);
    const fe = new VhostUserFrontend(fd);
    fe.replyTimeoutMs = replyTimeoutMs;
    return fe;
  }

  close(): void {
    if (this.fd >= 0) native.close(this.fd);
  }

  private sendRaw(buf: Uint8Array, fds: number[] | null): void {
    const fdArr = fds?.length ? Int32Array.from(fds) : null;
    let off = 0;
    while (off < buf.length) {
      const n = native.sendMsg(this.fd, buf, off, buf.length - off, off === 0 ? fdArr : null);
      if (n < 0) throw new FrontendError(`send: errno ${-n}`);
      off += n;
    }
  }

  private recvExact(n: number): Buffer {
    const b = Buffer.alloc(n);
    const fds = new Int32Array(8).fill(-1);
    let off = 0;
    const pollFds = Int32Array.of(this.fd);
    const revents = new Int32Array(1);
    while (off < n) {
      if (this.replyTimeoutMs !== undefined && native.poll(pollFds, 1, this.replyTimeoutMs, revents) === 0) {
        throw new FrontendError(`no reply from the backend within ${this.replyTimeoutMs} ms`);
      }
      const r = native.recvMsg(this.fd, b, off, n - off, fds);
      for (const fd of fds) if (fd >= 0) native.close(fd);
      fds.fill(-1);
      if (r === 0) throw new FrontendError('backend closed the connection');
      if (r < 0) throw new FrontendError(`recv: errno ${-r}`);
      off += r;
    }
    return b;
  }

  /** Sends a raw message (any request, flags, payload, fds), for tests of hostile input. */
  sendMessage(request: number, flags: number, payload: Uint8Array, fds: number[] | null = null): void {
    this.sendRaw(Buffer.concat([encodeHeader(request, flags, payload.length), payload]), fds);
  }

  readReply(request: number): Buffer {
    const h = parseHeader(this.recvExact(HEADER_SIZE));
    if (h.request !== request) throw new FrontendError(`reply to ${reqName(h.request)} while waiting for ${reqName(request)}`);
    if ((h.flags & VHOST_USER_REPLY_MASK) === 0) throw new FrontendError(`${reqName(request)}: reply without the reply flag`);
    if (h.size > 4096) throw new FrontendError(`${reqName(request)}: reply of ${h.size} bytes`);
    return this.recvExact(h.size);
  }

  /** A request whose reply is its own payload (GET_*). */
  get(request: FrontendReq, payload: Uint8Array = new Uint8Array(0)): Buffer {
    this.sendMessage(request, VHOST_USER_VERSION, payload);
    return this.readReply(request);
  }

  /** A request without a reply of its own; with REPLY_ACK negotiated, waits for the ack and checks it. */
  set(request: FrontendReq, payload: Uint8Array, fds: number[] | null = null): void {
    if (!this.replyAck) {
      this.sendMessage(request, VHOST_USER_VERSION, payload, fds);
      return;
    }
    const status = this.post(request, payload, fds).status();
    if (status !== 0n) throw new FrontendError(`${reqName(request)} failed (status ${status})`);
  }

  /**
   * Sends a request asking for an ack (REPLY_ACK must be negotiated) and returns without waiting for
   * it, so a test can watch when the backend answers (e.g. not before an in-flight request is done).
   * Nothing else may be sent on this connection until the ack has been read.
   */
  post(request: FrontendReq, payload: Uint8Array, fds: number[] | null = null): PendingAck {
    if (!this.replyAck) throw new FrontendError(`${reqName(request)}: an ack needs REPLY_ACK negotiated`);
    this.sendMessage(request, VHOST_USER_VERSION | VHOST_USER_NEED_REPLY_MASK, payload, fds);
    const pollFds = Int32Array.of(this.fd);
    const revents = new Int32Array(1);
    let status: bigint | undefined;
    return {
      ready: () => status !== undefined || native.poll(pollFds, 1, 0, revents) > 0,
      status: () => {
        if (status === undefined) {
          const r = this.readReply(request);
          status = r.length === 8 ? r.readBigUInt64LE(0) : -1n;
        }
        return status;
      },
    };
  }

  getFeatures(): bigint {
    return this.get(FrontendReq.GET_FEATURES).readBigUInt64LE(0);
  }
  setFeatures(f: bigint): void {
    this.set(FrontendReq.SET_FEATURES, u64Payload(f));
  }
  getProtocolFeatures(): bigint {
    return this.get(FrontendReq.GET_PROTOCOL_FEATURES).readBigUInt64LE(0);
  }
  setProtocolFeatures(f: bigint): void {
    this.set(FrontendReq.SET_PROTOCOL_FEATURES, u64Payload(f));
    this.replyAck = (f & REPLY_ACK_BIT) !== 0n;
  }
  setOwner(): void {
    this.set(FrontendReq.SET_OWNER, new Uint8Array(0));
  }
  getQueueNum(): bigint {
    return this.get(FrontendReq.GET_QUEUE_NUM).readBigUInt64LE(0);
  }
  setMemTable(regions: MemoryRegion[], fds: number[]): void {
    this.set(FrontendReq.SET_MEM_TABLE, memTablePayload(regions), fds);
  }
  /** GET_MAX_MEM_SLOTS (CONFIGURE_MEM_SLOTS): how many regions the backend can hold. */
  getMaxMemSlots(): bigint {
    return this.get(FrontendReq.GET_MAX_MEM_SLOTS).readBigUInt64LE(0);
  }
  /** ADD_MEM_REG (CONFIGURE_MEM_SLOTS): one region and its fd. */
  addMemReg(region: MemoryRegion, fd: number): void {
    this.set(FrontendReq.ADD_MEM_REG, singleRegionPayload(region), [fd]);
  }
  /** REM_MEM_REG: the region is named by its description; no fd (vhost-user spec). */
  remMemReg(region: MemoryRegion): void {
    this.set(FrontendReq.REM_MEM_REG, singleRegionPayload(region));
  }
  setVringNum(q: number, num: number): void {
    this.set(FrontendReq.SET_VRING_NUM, vringStatePayload(q, num));
  }
  setVringBase(q: number, base: number): void {
    this.set(FrontendReq.SET_VRING_BASE, vringStatePayload(q, base));
  }
  getVringBase(q: number): number {
    return this.get(FrontendReq.GET_VRING_BASE, vringStatePayload(q, 0)).readUInt32LE(4);
  }
  setVringAddr(q: number, desc: bigint, used: bigint, avail: bigint): void {
    const p = Buffer.alloc(40);
    p.writeUInt32LE(q, 0);
    p.writeBigUInt64LE(desc, 8);
    p.writeBigUInt64LE(used, 16);
    p.writeBigUInt64LE(avail, 24);
    this.set(FrontendReq.SET_VRING_ADDR, p);
  }
  setVringKick(q: number, fd: number): void {
    this.set(FrontendReq.SET_VRING_KICK, u64Payload(BigInt(q)), [fd]);
  }
  setVringCall(q: number, fd: number): void {
    this.set(FrontendReq.SET_VRING_CALL, u64Payload(BigInt(q)), [fd]);
  }
  setVringEnable(q: number, on: boolean): void {
    this.set(FrontendReq.SET_VRING_ENABLE, vringStatePayload(q, on ? 1 : 0));
  }
}

/** The reply to a request posted with NEED_REPLY. */
export interface PendingAck {
  /** true once the ack can be read without blocking (or has been read) */
  ready(): boolean;
  /** the ack's status (0: success); blocks until it arrives */
  status(): bigint;
}

/** struct vhost_user_memory_region: gpa, size, user address, mmap offset (u64 each). */
function writeRegion(p: Buffer, off: number, r: MemoryRegion): void {
  p.writeBigUInt64LE(r.guestPhysAddr, off);
  p.writeBigUInt64LE(r.memorySize, off + 8);
  p.writeBigUInt64LE(r.userspaceAddr, off + 16);
  p.writeBigUInt64LE(r.mmapOffset, off + 24);
}

/** SET_MEM_TABLE: {u32 nregions; u32 padding; region[nregions]}. */
export function memTablePayload(regions: readonly MemoryRegion[]): Buffer {
  const p = Buffer.alloc(8 + regions.length * 32);
  p.writeUInt32LE(regions.length, 0);
  for (const [i, r] of regions.entries()) writeRegion(p, 8 + i * 32, r);
  return p;
}

/** ADD_MEM_REG / REM_MEM_REG: {u64 padding; region}. */
export function singleRegionPayload(r: MemoryRegion): Buffer {
  const p = Buffer.alloc(40);
  writeRegion(p, 8, r);
  return p;
}
