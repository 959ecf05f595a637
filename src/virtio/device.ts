/**
 * The virtio-fs device as the vhost-user layer drives it: per-queue vring state, guest memory and the
 * worker pool. Every change that workers could observe happens inside pool.withPaused(), then the
 * control block is rewritten whole and the workers re-read it.
 */
import { VIRTQ_DESC_SIZE } from '../abi/virtio.js';
import { DeviceError } from '../errors.js';
import { native } from '../native.js';
import type { Logger } from '../log.js';
import { GuestMemory, type GuestMemoryOptions, MAX_MEM_SLOTS, type RegionDesc } from '../memory/guest-memory.js';
import { Ctl, controlView, qslot } from './control.js';
import type { WorkerPool } from './pool.js';
import type { VqExports } from './wasm.js';

/** virtio-fs: queue 0 is the high-priority queue (FORGET, INTERRUPT), 1..N carry requests. */
export const VQ_HIPRIO = 0;
export const VIRTQUEUE_MAX_SIZE = 32768;

export interface VringAddrs {
  desc: bigint;
  avail: bigint;
  used: bigint;
}

/** The three parts of a split ring (virtio 1.1 §2.6): their frontend addresses and sizes. */
function ringRanges(num: number, a: VringAddrs): Array<{ ua: bigint; len: number }> {
  return [
    { ua: a.desc, len: VIRTQ_DESC_SIZE * num },
    { ua: a.avail, len: 6 + 2 * num },
    { ua: a.used, len: 6 + 8 * num },
  ];
}

class Vring {
  num = 0;
  addr: VringAddrs | null = null;
  base = 0;
  kick = -1;
  call = -1;
  err = -1;
  enabled = false;
  /** Running on the workers (queueSetup succeeded, in the control block). */
  active = false;
  /** The guest broke this ring (setup failed): not started again until the frontend re-configures it. */
  failed = false;
}

export class VirtioFsDevice {
  readonly memory: GuestMemory;
  private readonly rings: Vring[];
  private readonly ctl: Int32Array;
  /** VHOST_USER_F_PROTOCOL_FEATURES negotiated: rings start disabled until SET_VRING_ENABLE. */
  ringsStartDisabled = false;
  eventIdx = false;
  /** Run (workers paused) when the driver goes away, to drop per-session state above this layer. */
  readonly resetHooks: Array<() => void> = [];

  constructor(
    private readonly vq: VqExports,
    wasmMemory: WebAssembly.Memory,
    private readonly pool: WorkerPool,
    readonly numQueues: number,
    private readonly log: Logger,
    memoryOptions: GuestMemoryOptions = {},
  ) {
    if (numQueues < 2 || numQueues > vq.layout.MAX_QUEUES) throw new RangeError(`queue count must be 2..${vq.layout.MAX_QUEUES}`);
    this.memory = new GuestMemory(vq, wasmMemory, log, MAX_MEM_SLOTS, pool.size, memoryOptions);
    this.rings = Array.from({ length: numQueues }, () => new Vring());
    this.ctl = controlView(wasmMemory.buffer, vq.layout.CONTROL_BASE);
  }

  ring(q: number): Vring {
    const r = this.rings[q];
    if (r === undefined) throw new DeviceError(`queue index ${q} out of range (device has ${this.numQueues})`);
    return r;
  }

  /** Runs `fn` with the workers paused, then re-derives which queues run and publishes that. */
  private async change<T>(fn: () => T): Promise<T> {
    return this.pool.withPaused(() => {
      try {
        return fn();
      } finally {
        this.reconcile();
      }
    });
  }

  private reconcile(): void {
    const haveMemory = this.memory.mapped.length > 0;
    const wanted = this.rings.map((r) => haveMemory && r.addr !== null && r.num > 0 && r.kick >= 0 && r.enabled && !r.failed);
    // With apertures, the rings need pinned ones before queueSetup translates their addresses.
    try {
      this.memory.pinRings(
        this.rings.flatMap((r, q) => (wanted[q] ? ringRanges(r.num, r.addr!) : [])),
      );
    } catch (e) {
      this.log.error(`pinning the rings' memory failed: ${(e as Error).message}`);
    }
    for (let q = 0; q < this.numQueues; q++) {
      const r = this.rings[q]!;
      if (wanted[q]) {
        // A queue that starts afresh forgets any broken state from an earlier life.
        if (!r.active) this.vq.queueReset(q);
        // Re-translate every time: the memory table may have changed under a running queue.
        const rc = this.vq.queueSetup(q, r.num, r.addr!.desc, r.addr!.avail, r.addr!.used, this.eventIdx ? 1 : 0);
        if (rc < 0) {
          this.log.error(`queue ${q}: cannot start: ring addresses are invalid or unmapped (error ${rc})`);
          this.stopRing(q, r);
          r.failed = true;
        } else {
          if (!r.active) {
            this.vq.queueSetBase(q, r.base);
            this.log.info(`queue ${q} started (size ${r.num}, avail index ${r.base})`);
          }
          r.active = true;
        }
      } else {
        this.stopRing(q, r);
      }
      Atomics.store(this.ctl, qslot(q, Ctl.Q_ACTIVE), r.active ? 1 : 0);
      Atomics.store(this.ctl, qslot(q, Ctl.Q_KICKFD), r.kick);
      Atomics.store(this.ctl, qslot(q, Ctl.Q_CALLFD), r.call);
    }
    for (let q = this.numQueues; q < this.vq.layout.MAX_QUEUES; q++) Atomics.store(this.ctl, qslot(q, Ctl.Q_ACTIVE), 0);
  }

  /**
   * A running ring stops (disabled, memory gone, addresses broken): remember where it was, so that a
   * restart and GET_VRING_BASE continue from there (QEMU's vhost_dev_stop disables every ring, then
   * reads each one's base and hands it back with SET_VRING_BASE on restart). Workers are paused.
   */
  private stopRing(q: number, r: Vring): void {
    if (!r.active) return;
    r.base = this.vq.queueGetBase(q);
    r.active = false;
    this.log.info(`queue ${q} stopped (avail index ${r.base})`);
  }

  async setMemTable(regions: RegionDesc[], fds: number[]): Promise<void> {
    await this.change(() => this.memory.replace(regions, fds));
  }

  async addMemRegion(r: RegionDesc, fd: number): Promise<void> {
    await this.change(() => this.memory.add(r, fd));
  }

  async removeMemRegion(r: RegionDesc): Promise<void> {
    await this.change(() => this.memory.remove(r));
  }

  async setVringNum(q: number, num: number): Promise<void> {
    const r = this.ring(q);
    // virtio 1.1 §2.6: Queue Size is a power of 2, max 32768.
    if (num === 0 || num > VIRTQUEUE_MAX_SIZE || (num & (num - 1)) !== 0) {
      throw new DeviceError(`queue ${q}: size ${num} is not a power of two in 1..${VIRTQUEUE_MAX_SIZE}`);
    }
    await this.change(() => {
      r.num = num;
      r.failed = false;
    });
  }

  /**
   * SET_VRING_ADDR. Rings that could never start are refused here, so that the frontend hears of it
   * (a failure ack) instead of a queue that silently never runs: each part must be aligned (virtio 1.1
   * §2.6: desc 16, avail 2, used 4) and, once a memory table exists, lie inside one region by frontend
   * address. Before SET_VRING_NUM the size is taken as 1, the smallest ring, so nothing valid is
   * refused; the check at queue start covers a later size or memory table.
   */
  async setVringAddr(q: number, addr: VringAddrs): Promise<void> {
    const r = this.ring(q);
    const align: Array<[keyof VringAddrs, bigint]> = [['desc', 16n], ['avail', 2n], ['used', 4n]];
    for (const [part, a] of align) {
      if (addr[part] % a !== 0n) {
        throw new DeviceError(`queue ${q}: ${part} ring at 0x${addr[part].toString(16)} is not ${a}-byte aligned`);
      }
    }
    if (this.memory.mapped.length > 0) {
      const parts = ringRanges(r.num > 0 ? r.num : 1, addr);
      for (const [i, { ua, len }] of parts.entries()) {
        if (this.memory.regionByUaddr(ua, len) < 0) {
          throw new DeviceError(`queue ${q}: ${align[i]![0]} ring 0x${ua.toString(16)}+${len} is not inside one memory region`);
        }
      }
    }
    await this.change(() => {
      r.addr = addr;
      r.failed = false;
    });
  }

  async setVringBase(q: number, base: number): Promise<void> {
    const r = this.ring(q);
    if (base > 0xffff) throw new DeviceError(`queue ${q}: base ${base} is not a 16-bit ring index`);
    await this.change(() => {
      r.base = base;
      if (r.active) this.vq.queueSetBase(q, base);
    });
  }

  /** GET_VRING_BASE: stops the ring and returns the next avail index (vhost-user.rst). */
  async getVringBase(q: number): Promise<number> {
    const r = this.ring(q);
    return this.change(() => {
      this.stopRing(q, r);
      const base = r.base;
      r.failed = false;
      // The ring is stopped: a later start needs a new kick fd (libvhost-user does the same).
      this.closeFd(r, 'kick');
      this.closeFd(r, 'call');
      this.vq.queueReset(q);
      return base;
    });
  }

  async setVringKick(q: number, fd: number): Promise<void> {
    const r = this.ring(q);
    await this.change(() => {
      this.closeFd(r, 'kick');
      r.kick = fd;
      if (fd >= 0 && !this.ringsStartDisabled) r.enabled = true;
    });
  }

  async setVringCall(q: number, fd: number): Promise<void> {
    const r = this.ring(q);
    // The old fd is closed only with the workers paused: one of them may be about to signal it.
    await this.change(() => {
      this.closeFd(r, 'call');
      r.call = fd;
    });
    // A running ring may have completed requests while it had no call fd, or just before the old
    // one was replaced: QEMU restarts a ring with SET_VRING_KICK and only then SET_VRING_CALL, and
    // GET_VRING_BASE closed the old one. Those completions' interrupts would be lost and the driver
    // would wait forever; one spurious interrupt is harmless (the driver reads the used ring).
    if (r.active && fd >= 0) native.eventfdWrite(fd, 1);
  }

  setVringErr(q: number, fd: number): void {
    const r = this.ring(q);
    this.closeFd(r, 'err');
    r.err = fd;
  }

  async setVringEnable(q: number, on: boolean): Promise<void> {
    const r = this.ring(q);
    await this.change(() => {
      r.enabled = on;
    });
  }

  /** Disconnect, RESET_OWNER or RESET_DEVICE: forget the guest entirely. */
  async reset(): Promise<void> {
    await this.change(() => {
      for (let q = 0; q < this.numQueues; q++) {
        const r = this.rings[q]!;
        this.stopRing(q, r);
        this.closeFd(r, 'kick');
        this.closeFd(r, 'call');
        this.closeFd(r, 'err');
        this.rings[q] = new Vring();
        this.vq.queueReset(q);
      }
      this.memory.clear();
      // A new driver starts a new FUSE session with FUSE_INIT.
      for (let i = 0; i < Ctl.SESSION_LEN; i++) Atomics.store(this.ctl, Ctl.SESSION + i, 0);
      for (const hook of this.resetHooks) {
        try {
          hook();
        } catch (e) {
          this.log.error(`reset hook failed: ${(e as Error).stack ?? e}`);
        }
      }
      this.eventIdx = false;
      this.ringsStartDisabled = false;
    });
  }

  private closeFd(r: Vring, which: 'kick' | 'call' | 'err'): void {
    if (r[which] >= 0) native.close(r[which]);
    r[which] = -1;
  }

  activeQueues(): number[] {
    return this.rings.flatMap((r, q) => (r.active ? [q] : []));
  }
}
