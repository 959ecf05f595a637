/**
 * A virtio-fs "guest" without a VM: a vhost-user frontend plus driver-side queues over a memfd that
 * both this process and the backend map. It sends raw FUSE requests and resolves with the replies.
 * Works against any vhost-user-fs backend (ours or the reference daemon).
 */
import { native } from '../native.js';
import {
  ProtocolFeature,
  VHOST_USER_F_PROTOCOL_FEATURES,
  VIRTIO_F_VERSION_1,
} from '../vhost/message.js';
import { DriverQueue } from './driver-queue.js';
import { VhostUserFrontend } from './vhost-user-frontend.js';

export interface SessionOptions {
  /** bytes of "guest RAM" (default 256 MiB) */
  memBytes?: number;
  /** descriptors per queue (default 128: 64 requests in flight) */
  queueSize?: number;
  /** bytes per request slot (request + reply; default 1 MiB + 8 KiB) */
  slotBytes?: number;
  /** request queues after the hiprio queue (default 1) */
  requestQueues?: number;
}

const USER_ADDR_BASE = 0x7f00_0000_0000n;
const GPA_BASE = 0x1_0000_0000n;

interface Pending {
  resolve: (r: Uint8Array) => void;
  reject: (e: Error) => void;
}

export class VirtioFsSession {
  readonly queues: DriverQueue[] = [];
  private readonly kicks: number[] = [];
  private readonly calls: number[] = [];
  private readonly watches: Array<{ stop(): void }> = [];
  private readonly pending: Array<Map<number, Pending>> = [];
  readonly mem: Uint8Array;
  private readonly memory: WebAssembly.Memory;
  private closed = false;
  unique = 1n;

  private constructor(readonly fe: VhostUserFrontend, readonly memfd: number, opts: Required<SessionOptions>) {
    const pages = Math.ceil(opts.memBytes / 65536);
    this.memory = new WebAssembly.Memory({ initial: pages, maximum: pages, shared: true });
    const buf = this.memory.buffer as unknown as SharedArrayBuffer;
    const rc = native.mapFixed(buf, 0, opts.memBytes, memfd, 0);
    if (rc < 0) throw new Error(`mapping the session memory failed: errno ${-rc}`);
    this.mem = new Uint8Array(buf, 0, opts.memBytes);
  }

  static open(socketPath: string, o: SessionOptions = {}): VirtioFsSession {
    const opts: Required<SessionOptions> = {
      memBytes: o.memBytes ?? 256 << 20,
      queueSize: o.queueSize ?? 128,
      slotBytes: o.slotBytes ?? (1 << 20) + 8192,
      requestQueues: o.requestQueues ?? 1,
    };
    const nq = 1 + opts.requestQueues;
    const need = DriverQueue.bytesNeeded(opts.queueSize, opts.slotBytes);
    if ((need.rings + need.data) * nq > opts.memBytes) throw new RangeError('memBytes too small for the queues');
    const memfd = native.memfdCreate('virtiofs-session', opts.memBytes);
    if (memfd < 0) throw new Error(`memfd_create: errno ${-memfd}`);
    const fe = VhostUserFrontend.connect(socketPath);
    const s = new VirtioFsSession(fe, memfd, opts);
    try {
      s.setup(opts, nq, need);
    } catch (e) {
      s.close();
      throw e;
    }
    return s;
  }

  private setup(opts: Required<SessionOptions>, nq: number, need: { rings: number; data: number }): void {
    const fe = this.fe;
    const features = fe.getFeatures();
    const want = (1n << VIRTIO_F_VERSION_1) | (1n << VHOST_USER_F_PROTOCOL_FEATURES);
    if ((features & want) !== want) throw new Error(`backend lacks VERSION_1/PROTOCOL_FEATURES (0x${features.toString(16)})`);
    const pf = fe.getProtocolFeatures();
    fe.setProtocolFeatures(pf & (1n << BigInt(ProtocolFeature.REPLY_ACK)));
    fe.setOwner();
    fe.setFeatures(want);
    fe.setMemTable(
      [{ guestPhysAddr: GPA_BASE, memorySize: BigInt(opts.memBytes), userspaceAddr: USER_ADDR_BASE, mmapOffset: 0n }],
      [this.memfd],
    );
    const per = need.rings + need.data;
    for (let q = 0; q < nq; q++) {
      const base = q * per;
      const dq = new DriverQueue(this.mem, { gpa: GPA_BASE, ringOff: base, dataOff: base + need.rings, size: opts.queueSize, slotBytes: opts.slotBytes });
      this.queues.push(dq);
      this.pending.push(new Map());
      const ua = (gpa: bigint): bigint => gpa - GPA_BASE + USER_ADDR_BASE;
      fe.setVringNum(q, opts.queueSize);
      fe.setVringBase(q, 0);
      fe.setVringAddr(q, ua(dq.descGpa), ua(dq.usedGpa), ua(dq.availGpa));
      const kick = native.eventfd(0);
      const call = native.eventfd(0);
      this.kicks.push(kick);
      this.calls.push(call);
      fe.setVringKick(q, kick);
      fe.setVringCall(q, call);
      fe.setVringEnable(q, true);
      this.watches.push(native.watchFd(call, () => this.onCall(q)));
    }
  }

  private onCall(q: number): void {
    native.eventfdRead(this.calls[q]!);
    const dq = this.queues[q]!;
    const map = this.pending[q]!;
    for (const done of dq.reap()) {
      const p = map.get(done.slot);
      map.delete(done.slot);
      p?.resolve(this.mem.slice(done.replyOff, done.replyOff + done.len));
    }
  }

  /** Sends one request on queue q (1 = first request queue); resolves with the reply bytes. */
  send(q: number, req: Uint8Array, replyCap: number): Promise<Uint8Array> {
    if (this.closed) return Promise.reject(new Error('session closed'));
    const dq = this.queues[q];
    if (!dq) return Promise.reject(new RangeError(`no queue ${q}`));
    const slot = dq.submit(req, replyCap);
    if (slot < 0) return Promise.reject(new Error('queue full'));
    const p = new Promise<Uint8Array>((resolve, reject) => this.pending[q]!.set(slot, { resolve, reject }));
    native.eventfdWrite(this.kicks[q]!, 1);
    return p;
  }

  /** Kicks queue q without adding anything (for hostile-driver tests that write the ring raw). */
  kick(q: number): void {
    native.eventfdWrite(this.kicks[q]!, 1);
  }

  /** Waits for the next used element of queue q whatever its slot (for raw tests). */
  waitUsed(q: number, slot: number): Promise<Uint8Array> {
    return new Promise<Uint8Array>((resolve, reject) => this.pending[q]!.set(slot, { resolve, reject }));
  }

  inFlight(q: number): number {
    return this.pending[q]?.size ?? 0;
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    for (const w of this.watches) w.stop();
    this.fe.close();
    for (const fd of [...this.kicks, ...this.calls, this.memfd]) native.close(fd);
    for (const m of this.pending) for (const p of m.values()) p.reject(new Error('session closed'));
  }
}
