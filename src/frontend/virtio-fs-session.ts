/**
 * A virtio-fs "guest" without a VM: a vhost-user frontend plus driver-side queues over guest RAM
 * (memfds) that both this process and the backend map. It sends raw FUSE requests and resolves with the
 * replies. Works against any vhost-user-fs backend (ours or the reference daemon).
 *
 * By default guest RAM is one small region, mapped whole. With `memory`, it is the table of a large
 * VM: regions anywhere in the 64-bit spaces, of any size, of which this process maps only some arenas
 * (guest-ram.ts); rings and request slots go where the layout says, and sendChain places each buffer.
 */
import { native } from '../native.js';
import {
  FrontendReq,
  ProtocolFeature,
  VHOST_MEMORY_BASELINE_NREGIONS,
  VHOST_USER_F_PROTOCOL_FEATURES,
  VIRTIO_F_VERSION_1,
  VIRTIO_RING_F_INDIRECT_DESC,
} from '../vhost/message.js';
import { type ChainPlacement, DriverQueue } from './driver-queue.js';
import { GuestRam, type RegionSpec } from './guest-ram.js';
import { type PendingAck, VhostUserFrontend, singleRegionPayload } from './vhost-user-frontend.js';

export interface SessionOptions {
  /** bytes of "guest RAM" (default 256 MiB) */
  memBytes?: number;
  /** descriptors per queue (default 128: 64 requests in flight) */
  queueSize?: number;
  /** bytes per request slot (request + reply; default 1 MiB + 8 KiB) */
  slotBytes?: number;
  /** request queues after the hiprio queue (default 1) */
  requestQueues?: number;
  /** guest RAM as a list of regions (default: one region of memBytes, mapped whole) */
  memory?: SessionMemory;
  /** kick and call eventfds without EFD_NONBLOCK (nothing in the vhost-user spec asks for the flag) */
  blockingEventfds?: boolean;
}

/** Guest RAM as a VM's memory table: the regions, how they are sent, where each queue lives. */
export interface SessionMemory {
  regions: readonly RegionSpec[];
  /**
   * 'set-mem-table' (default): one SET_MEM_TABLE (at most 8 regions). 'add-mem-reg': GET_MAX_MEM_SLOTS,
   * then one ADD_MEM_REG per region, as QEMU does once CONFIGURE_MEM_SLOTS is negotiated.
   */
  via?: 'set-mem-table' | 'add-mem-reg';
  /**
   * Per queue (0 = hiprio): guest-physical addresses of its rings and of its request slots, each in
   * one piece of mapped guest RAM. Default: one after the other from the start of the first arena.
   */
  queues?: ReadonlyArray<{ rings: bigint; slots: bigint }>;
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
  private blockingEventfds = false;
  private readonly calls: number[] = [];
  private readonly watches: Array<{ stop(): void }> = [];
  private readonly pending: Array<Map<number, Pending>> = [];
  /** guest RAM as this process maps it (linear from GPA_BASE by default; see guest-ram.ts) */
  readonly mem: Uint8Array;
  /** the memfd of the first region */
  readonly memfd: number;
  /** the negotiated virtio features and vhost-user protocol features */
  features = 0n;
  protocolFeatures = 0n;
  private closed = false;
  unique = 1n;

  private constructor(readonly fe: VhostUserFrontend, readonly ram: GuestRam, linearBytes: number) {
    this.memfd = ram.region(0).fd;
    this.mem = linearBytes > 0 ? ram.bytes.subarray(0, linearBytes) : ram.bytes;
  }

  static open(socketPath: string, o: SessionOptions = {}): VirtioFsSession {
    const opts: Required<Omit<SessionOptions, 'memory' | 'blockingEventfds'>> = {
      memBytes: o.memBytes ?? 256 << 20,
      queueSize: o.queueSize ?? 128,
      slotBytes: o.slotBytes ?? (1 << 20) + 8192,
      requestQueues: o.requestQueues ?? 1,
    };
    const nq = 1 + opts.requestQueues;
    // With a region table, a quarter of each ring's descriptors are request slots and the rest serve
    // placed chains; by default every descriptor belongs to a slot, as before.
    const slots = o.memory ? opts.queueSize >> 2 : opts.queueSize >> 1;
    const need = DriverQueue.bytesNeeded(opts.queueSize, opts.slotBytes);
    need.data = slots * opts.slotBytes;
    if (!o.memory && (need.rings + need.data) * nq > opts.memBytes) throw new RangeError('memBytes too small for the queues');
    const ram = GuestRam.create(
      o.memory?.regions ?? [{ guestPhysAddr: GPA_BASE, userspaceAddr: USER_ADDR_BASE, size: BigInt(opts.memBytes), arenas: [{ offset: 0n, bytes: opts.memBytes }] }],
      o.memory ? undefined : 0,
    );
    let fe: VhostUserFrontend;
    try {
      fe = VhostUserFrontend.connect(socketPath);
    } catch (e) {
      ram.close();
      throw e;
    }
    const s = new VirtioFsSession(fe, ram, o.memory ? 0 : opts.memBytes);
    s.blockingEventfds = o.blockingEventfds === true;
    try {
      s.negotiate(o.memory !== undefined);
      s.sendTable(o.memory?.via ?? 'set-mem-table');
      // Default placement: queue after queue from the start of the first arena.
      const first = ram.arena(0, 0).gpa;
      const at = (q: number): { rings: bigint; slots: bigint } =>
        o.memory?.queues?.[q] ?? { rings: first + BigInt(q * (need.rings + need.data)), slots: first + BigInt(q * (need.rings + need.data) + need.rings) };
      for (let q = 0; q < nq; q++) s.setupQueue(q, opts.queueSize, opts.slotBytes, slots, at(q), need);
    } catch (e) {
      s.close();
      throw e;
    }
    return s;
  }

  private negotiate(regionTable: boolean): void {
    const fe = this.fe;
    const features = fe.getFeatures();
    const want = (1n << VIRTIO_F_VERSION_1) | (1n << VHOST_USER_F_PROTOCOL_FEATURES);
    if ((features & want) !== want) throw new Error(`backend lacks VERSION_1/PROTOCOL_FEATURES (0x${features.toString(16)})`);
    const pf = fe.getProtocolFeatures();
    // With a region table, regions may come and go later (ADD_MEM_REG / REM_MEM_REG, which need
    // CONFIGURE_MEM_SLOTS) and placed chains may use indirect tables (INDIRECT_DESC, when offered).
    const protocol = (1n << BigInt(ProtocolFeature.REPLY_ACK)) | (regionTable ? 1n << BigInt(ProtocolFeature.CONFIGURE_MEM_SLOTS) : 0n);
    fe.setProtocolFeatures(pf & protocol);
    this.protocolFeatures = pf & protocol;
    fe.setOwner();
    this.features = want | (regionTable ? features & (1n << VIRTIO_RING_F_INDIRECT_DESC) : 0n);
    fe.setFeatures(this.features);
  }

  private sendTable(via: 'set-mem-table' | 'add-mem-reg'): void {
    const ram = this.ram;
    const all = Array.from({ length: ram.count }, (_, i) => ram.region(i));
    if (via === 'set-mem-table') {
      if (all.length > VHOST_MEMORY_BASELINE_NREGIONS) throw new RangeError(`SET_MEM_TABLE carries at most ${VHOST_MEMORY_BASELINE_NREGIONS} regions`);
      this.fe.setMemTable(
        all.map((r) => r.wire),
        all.map((r) => r.fd),
      );
      return;
    }
    if ((this.protocolFeatures & (1n << BigInt(ProtocolFeature.CONFIGURE_MEM_SLOTS))) === 0n) throw new Error('backend lacks CONFIGURE_MEM_SLOTS');
    const slots = this.fe.getMaxMemSlots();
    if (BigInt(all.length) > slots) throw new RangeError(`${all.length} regions but the backend has ${slots} memory slots`);
    for (const r of all) this.fe.addMemReg(r.wire, r.fd);
  }

  private setupQueue(q: number, size: number, slotBytes: number, slots: number, at: { rings: bigint; slots: bigint }, need: { rings: number; data: number }): void {
    const fe = this.fe;
    const ram = this.ram;
    const mem = this.mem;
    const dq = new DriverQueue(mem, { view: ram, ringOff: ram.offsetOf(at.rings, need.rings), dataOff: ram.offsetOf(at.slots, need.data), size, slotBytes, slots });
    this.queues.push(dq);
    this.pending.push(new Map());
    fe.setVringNum(q, size);
    fe.setVringBase(q, 0);
    fe.setVringAddr(q, ram.uaddrOf(dq.descGpa), ram.uaddrOf(dq.usedGpa), ram.uaddrOf(dq.availGpa));
    const kick = native.eventfd(0, this.blockingEventfds);
    const call = native.eventfd(0, this.blockingEventfds);
    this.kicks.push(kick);
    this.calls.push(call);
    fe.setVringKick(q, kick);
    fe.setVringCall(q, call);
    fe.setVringEnable(q, true);
    this.watches.push(native.watchFd(call, () => this.onCall(q)));
  }

  private onCall(q: number): void {
    native.eventfdRead(this.calls[q]!);
    const dq = this.queues[q]!;
    const map = this.pending[q]!;
    for (const done of dq.reap()) {
      const p = map.get(done.head);
      map.delete(done.head);
      p?.resolve(done.reply);
    }
  }

  /** Sends one request on queue q (1 = first request queue); resolves with the reply bytes. */
  send(q: number, req: Uint8Array, replyCap: number): Promise<Uint8Array> {
    if (this.closed) return Promise.reject(new Error('session closed'));
    const dq = this.queues[q];
    if (!dq) return Promise.reject(new RangeError(`no queue ${q}`));
    const slot = dq.submit(req, replyCap);
    if (slot < 0) return Promise.reject(new Error('queue full'));
    const p = new Promise<Uint8Array>((resolve, reject) => this.pending[q]!.set(slot * 2, { resolve, reject }));
    native.eventfdWrite(this.kicks[q]!, 1);
    return p;
  }

  /**
   * Sends one request whose buffers the caller placed (guest-physical addresses, see ChainPlacement);
   * resolves with the reply gathered from the writable buffers.
   */
  sendChain(q: number, req: Uint8Array, placement: ChainPlacement): Promise<Uint8Array> {
    if (this.closed) return Promise.reject(new Error('session closed'));
    const dq = this.queues[q];
    if (!dq) return Promise.reject(new RangeError(`no queue ${q}`));
    const head = dq.submitChain(req, placement);
    if (head < 0) return Promise.reject(new Error('no free descriptors'));
    const p = new Promise<Uint8Array>((resolve, reject) => this.pending[q]!.set(head, { resolve, reject }));
    native.eventfdWrite(this.kicks[q]!, 1);
    return p;
  }

  /** Maps a new region (and its arenas) here and hands it to the backend with ADD_MEM_REG; its index. */
  addRegion(spec: RegionSpec): number {
    const i = this.ram.add(spec);
    const r = this.ram.region(i);
    this.fe.addMemReg(r.wire, r.fd);
    return i;
  }

  /** REM_MEM_REG of region i; this process keeps its arenas mapped (a test may read what landed there). */
  removeRegion(i: number): void {
    this.fe.remMemReg(this.ram.region(i).wire);
  }

  /** REM_MEM_REG of region i without waiting for the ack (see VhostUserFrontend.post). */
  postRemoveRegion(i: number): PendingAck {
    return this.fe.post(FrontendReq.REM_MEM_REG, singleRegionPayload(this.ram.region(i).wire));
  }

  /** Kicks queue q without adding anything (for hostile-driver tests that write the ring raw). */
  kick(q: number): void {
    native.eventfdWrite(this.kicks[q]!, 1);
  }

  /** Waits for the used element of a slot of queue q that a raw test published itself (head 2 × slot). */
  waitUsed(q: number, slot: number): Promise<Uint8Array> {
    return new Promise<Uint8Array>((resolve, reject) => this.pending[q]!.set(slot * 2, { resolve, reject }));
  }

  inFlight(q: number): number {
    return this.pending[q]?.size ?? 0;
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    for (const w of this.watches) w.stop();
    this.fe.close();
    for (const fd of [...this.kicks, ...this.calls]) native.close(fd);
    this.ram.close();
    for (const m of this.pending) for (const p of m.values()) p.reject(new Error('session closed'));
  }
}
