/**
 * The load tester's "guest": guest RAM in a memfd mapped into this process's own wasm memory window, a
 * vhost-user connection set up the way QEMU 7.2 sets up a vhost-user-fs device, and the driver-side
 * queues in the AS module (assembly/driver.ts) that the driver threads run. The main thread uses queue 1
 * synchronously (`call`) for INIT and the fixture before the driver threads start.
 *
 * Guest RAM layout, queue after queue (hiprio first, rings only): the rings, then with indirect
 * descriptors one table per request slot, then the slots' data. A slot holds the request (header and
 * arguments at SLOT_REQ), the reply's header and arguments (SLOT_REPLY) and the data pages (SLOT_DATA),
 * page-aligned like the page-cache pages a Linux guest would hand over.
 */
import { FrontendError } from '../errors.js';
import { native } from '../native.js';
import { type VqExports, createSharedMemory, loadVirtqueueModule } from '../virtio/wasm.js';
import { VhostUserFrontend } from '../frontend/vhost-user-frontend.js';
import {
  ProtocolFeature,
  VIRTIO_F_VERSION_1,
  VIRTIO_RING_F_EVENT_IDX,
  VIRTIO_RING_F_INDIRECT_DESC,
  VHOST_USER_F_PROTOCOL_FEATURES,
} from '../vhost/message.js';

export const SLOT_REQ = 0;
export const SLOT_REPLY = 2048;
export const SLOT_DATA = 4096;
const PAGE = 4096;
/** where guest RAM starts, guest-physically (as a VM's RAM above 4 GiB would) */
const GPA_BASE = 0x1_0000_0000;

/** One queue as the driver threads see it (plain data: it is sent to them). */
export interface QueuePlan {
  /** vhost-user queue index: 0 hiprio, 1.. request queues */
  index: number;
  size: number;
  /** request slots (the depth) */
  slots: number;
  slotBytes: number;
  /** window address of slot 0's data area */
  dataWin: number;
  kick: number;
  call: number;
}

export interface GuestOptions {
  requestQueues: number;
  queueSize: number;
  depth: number;
  slotBytes: number;
  /** descriptors a request may need when there are no indirect descriptors */
  directDescs: number;
  replyTimeoutMs: number;
  /** take VIRTIO_RING_F_INDIRECT_DESC / VIRTIO_RING_F_EVENT_IDX when offered (a Linux guest does) */
  indirect: boolean;
  eventIdx: boolean;
}

export interface Negotiated {
  features: bigint;
  protocol: bigint;
  eventIdx: boolean;
  indirect: boolean;
  /** request queues the backend can serve (GET_QUEUE_NUM - 1; 1 without MQ) */
  maxRequestQueues: number;
}

let shared: Promise<{ memory: WebAssembly.Memory; vq: VqExports }> | undefined;

export class LoadGuest {
  readonly queues: QueuePlan[] = [];
  private readonly fds: number[] = [];
  private closed = false;
  private readonly pollFds = new Int32Array(1);
  private readonly revents = new Int32Array(1);

  private constructor(
    readonly memory: WebAssembly.Memory,
    readonly vq: VqExports,
    readonly memfd: number,
    readonly ramBytes: number,
    readonly fe: VhostUserFrontend,
    readonly negotiated: Negotiated,
  ) {}

  get sab(): SharedArrayBuffer {
    return this.memory.buffer as unknown as SharedArrayBuffer;
  }

  get win(): number {
    return this.vq.layout.WINDOW_BASE;
  }

  static async open(socket: string, o: GuestOptions): Promise<LoadGuest> {
    // One 4 GiB memory for the whole process, reused run after run (each would otherwise reserve
    // another 4 GiB of address space until collected); a run re-initialises every record it uses.
    shared ??= (async () => {
      const memory = createSharedMemory();
      return { memory, vq: await loadVirtqueueModule(memory) };
    })();
    const { memory, vq } = await shared;
    const L = vq.layout;
    const fe = connectRetry(socket, o.replyTimeoutMs);
    let memfd = -1;
    try {
      const n = negotiate(fe, o);
      if (o.requestQueues > n.maxRequestQueues) {
        throw new FrontendError(`the backend serves ${n.maxRequestQueues} request queue(s), not ${o.requestQueues}`);
      }
      if (!n.indirect && o.directDescs * o.depth > o.queueSize) {
        throw new FrontendError(`without indirect descriptors a queue of ${o.queueSize} holds ${Math.floor(o.queueSize / o.directDescs)} requests, not --depth=${o.depth}`);
      }
      const rings = ringBytes(o.queueSize);
      const perQueue = rings + (n.indirect ? o.depth * L.DRV_TABLE_STRIDE : 0) + o.depth * o.slotBytes;
      const ramBytes = alignUp(ringBytes(o.queueSize) + perQueue * o.requestQueues, 2 << 20);
      if (ramBytes > L.WINDOW_END - L.WINDOW_BASE) throw new FrontendError(`${ramBytes >> 20} MiB of guest RAM do not fit the window: lower --depth, --queues or --bs`);
      memfd = native.memfdCreate('virtiofsd-ts-loadtest', ramBytes);
      if (memfd < 0) throw new FrontendError(`memfd_create: errno ${-memfd}`, -memfd);
      const rc = native.mapFixed(memory.buffer as unknown as SharedArrayBuffer, L.WINDOW_BASE, ramBytes, memfd, 0);
      if (rc < 0) throw new FrontendError(`mmap of guest RAM: errno ${-rc}`, -rc);
      const g = new LoadGuest(memory, vq, memfd, ramBytes, fe, n);
      g.fds.push(memfd);
      g.setup(o, rings, perQueue);
      return g;
    } catch (e) {
      fe.close();
      if (memfd >= 0) native.close(memfd);
      throw e;
    }
  }

  private setup(o: GuestOptions, rings: number, perQueue: number): void {
    const { fe, vq, negotiated: n } = this;
    const L = vq.layout;
    const uaddr = native.memoryAddress(this.sab) + BigInt(L.WINDOW_BASE);
    const region = { guestPhysAddr: BigInt(GPA_BASE), memorySize: BigInt(this.ramBytes), userspaceAddr: uaddr, mmapOffset: 0n };
    if ((n.protocol & (1n << BigInt(ProtocolFeature.CONFIGURE_MEM_SLOTS))) !== 0n) fe.addMemReg(region, this.memfd);
    else fe.setMemTable([region], [this.memfd]);
    let off = 0;
    for (let q = 0; q <= o.requestQueues; q++) {
      const desc = off;
      const avail = desc + 16 * o.queueSize;
      const used = alignUp(avail + 6 + 2 * o.queueSize, 4);
      const slots = q === 0 ? 0 : o.depth;
      const tables = off + rings;
      const data = tables + (n.indirect && q > 0 ? o.depth * L.DRV_TABLE_STRIDE : 0);
      const rc = vq.drvSetup(
        q, o.queueSize, this.win + desc, this.win + avail, this.win + used, n.eventIdx ? 1 : 0, n.indirect ? 1 : 0,
        o.slotBytes, BigInt(GPA_BASE + data), this.win + data, BigInt(GPA_BASE + tables), this.win + tables, o.directDescs,
      );
      if (rc !== 0) throw new FrontendError(`driver queue ${q}: error ${rc}`);
      fe.setVringNum(q, o.queueSize);
      fe.setVringBase(q, 0);
      fe.setVringAddr(q, uaddr + BigInt(desc), uaddr + BigInt(used), uaddr + BigInt(avail));
      const kick = native.eventfd(0);
      const call = native.eventfd(0);
      if (kick < 0 || call < 0) throw new FrontendError('eventfd failed');
      this.fds.push(kick, call);
      fe.setVringKick(q, kick);
      fe.setVringCall(q, call);
      this.queues.push({ index: q, size: o.queueSize, slots, slotBytes: o.slotBytes, dataWin: this.win + data, kick, call });
      off += q === 0 ? rings : perQueue;
    }
    if ((n.features & (1n << VHOST_USER_F_PROTOCOL_FEATURES)) !== 0n) {
      for (let q = 0; q <= o.requestQueues; q++) fe.setVringEnable(q, true);
    }
  }

  /** Window address of slot s of queue q's data area. */
  slotWin(q: number, s: number): number {
    const p = this.queues[q]!;
    return p.dataWin + s * p.slotBytes;
  }

  /**
   * One request on queue q, slot 0, laid out by `shape`, waited for (main thread, before the driver
   * threads run). Returns the used length.
   */
  call(q: number, shape: number, timeoutMs: number): number {
    const p = this.queues[q]!;
    const head = this.vq.drvChain(q, 0, shape);
    if (head < 0) throw new FrontendError(`drvChain: error ${head}`);
    this.vq.drvAdd(q, head);
    if (this.vq.drvKick(q) === 1) native.eventfdWrite(p.kick, 1);
    const reap = this.vq.layout.DRV_REAP + q * this.vq.layout.DRV_REAP_MAX * 8;
    const u32 = new Uint32Array(this.memory.buffer, reap, 2);
    const deadline = Date.now() + timeoutMs;
    this.pollFds[0] = p.call;
    for (;;) {
      const n = this.vq.drvReap(q);
      if (n > 0) {
        if (n !== 1 || u32[0] !== head) throw new FrontendError(`unexpected used element ${u32[0]} (expected ${head})`);
        return u32[1]!;
      }
      if (this.vq.drvArm(q) === 1) continue;
      const left = deadline - Date.now();
      if (left <= 0) throw new FrontendError(`no reply from the backend within ${timeoutMs} ms`);
      if (native.poll(this.pollFds, 1, Math.min(left, 200), this.revents) > 0) native.eventfdRead(p.call);
    }
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.fe.close();
    for (const fd of this.fds) native.close(fd);
    native.unmapFixed(this.sab, this.vq.layout.WINDOW_BASE, this.ramBytes);
  }
}

function connectRetry(socket: string, timeoutMs: number): VhostUserFrontend {
  // A backend may create its socket file a moment before it listens on it.
  for (let i = 0; ; i++) {
    try {
      return VhostUserFrontend.connect(socket, timeoutMs);
    } catch (e) {
      if (i >= 50) throw e;
      Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 20);
    }
  }
}

/** The negotiation QEMU 7.2 does for vhost-user-fs, and the ring features a Linux 6.x driver takes. */
function negotiate(fe: VhostUserFrontend, o: GuestOptions): Negotiated {
  const offered = fe.getFeatures();
  const need = (1n << VIRTIO_F_VERSION_1) | (1n << VHOST_USER_F_PROTOCOL_FEATURES);
  if ((offered & need) !== need) throw new FrontendError(`the backend lacks VERSION_1 or PROTOCOL_FEATURES (features 0x${offered.toString(16)})`);
  const pf = fe.getProtocolFeatures();
  const bit = (f: ProtocolFeature): bigint => 1n << BigInt(f);
  const protocol = pf & (bit(ProtocolFeature.MQ) | bit(ProtocolFeature.REPLY_ACK) | bit(ProtocolFeature.CONFIGURE_MEM_SLOTS));
  fe.setProtocolFeatures(protocol);
  const maxRequestQueues = (protocol & bit(ProtocolFeature.MQ)) !== 0n ? Number(fe.getQueueNum()) - 1 : 1;
  if ((protocol & bit(ProtocolFeature.CONFIGURE_MEM_SLOTS)) !== 0n) fe.getMaxMemSlots();
  fe.setOwner();
  const ring = (o.eventIdx ? 1n << VIRTIO_RING_F_EVENT_IDX : 0n) | (o.indirect ? 1n << VIRTIO_RING_F_INDIRECT_DESC : 0n);
  const features = need | (offered & ring);
  fe.setFeatures(features);
  return {
    features,
    protocol,
    eventIdx: (features & (1n << VIRTIO_RING_F_EVENT_IDX)) !== 0n,
    indirect: (features & (1n << VIRTIO_RING_F_INDIRECT_DESC)) !== 0n,
    maxRequestQueues,
  };
}

/** Bytes of a queue's rings (desc, avail with used_event, used with avail_event), page-rounded. */
function ringBytes(size: number): number {
  return alignUp(alignUp(16 * size + 6 + 2 * size, 4) + 6 + 8 * size, PAGE);
}

function alignUp(v: number, a: number): number {
  return Math.ceil(v / a) * a;
}
