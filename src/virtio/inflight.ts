/**
 * What a worker holds while it serves a request, kept in shared memory (the worker's record in the
 * control block, control.ts `Flight`), so that a worker thread that dies mid-request leaves nothing
 * behind (docs/internals.md "Worker control"):
 * - the chain it popped and has not published: the control plane answers it (FUSE EIO), so the
 *   guest's request does not wait forever;
 * - the inode and handle pins it took: released for it, so a forgotten inode's fd is closed;
 * - its epoll fd: closed for it.
 *
 * The worker writes the record with plain stores (four per request, two per pin, one per unpin): the
 * control plane reads it only after the thread has ended (piscina reports the task's failure after the
 * thread's exit event or its last message), which orders the reads after every store. Other workers
 * read its QUEUE and SEQ words while it runs, to see it stuck in a request (QueueRunner's stall watch):
 * a stale value there only delays that by one look.
 * The control plane's side, after a death, is src/virtio/orphans.ts.
 */
import { FLIGHT_BASE, FLIGHT_STRIDE, Flight } from './control.js';
import type { VqExports } from './wasm.js';

export function recordViews(buffer: ArrayBufferLike, controlBase: number, wid: number): { words: Int32Array; ids: BigInt64Array } {
  const at = controlBase + FLIGHT_BASE + wid * FLIGHT_STRIDE;
  return {
    words: new Int32Array(buffer, at, Flight.PIN_ID_BYTE >>> 2),
    ids: new BigInt64Array(buffer, at + Flight.PIN_ID_BYTE, Flight.PIN_SLOTS),
  };
}

/** Worker w's side of its record. */
export class InFlight {
  private readonly words: Int32Array;
  /** the pin ids' u64 slots as u32 halves (lo, hi): a node id or fh is a number below 2^53 */
  private readonly idWords: Uint32Array;

  constructor(buffer: ArrayBufferLike, controlBase: number, wid: number) {
    const { words, ids } = recordViews(buffer, controlBase, wid);
    this.words = words;
    this.idWords = new Uint32Array(ids.buffer, ids.byteOffset, ids.length * 2);
  }

  /**
   * Right after the pop: this chain is ours to answer. (A thread the runtime ends from outside — heap
   * exhausted, terminate() — stops at its next call or loop check, which may fall between the pop and
   * this store: that chain then stays unanswered. Ends from inside, a throw or process.exit, cannot.)
   */
  begin(q: number, head: number): void {
    this.words[Flight.HEAD] = head;
    this.words[Flight.QUEUE] = q + 1;
    this.words[Flight.SEQ] = (this.words[Flight.SEQ]! + 1) | 0;
  }

  /**
   * Just before the push: from here the chain may be published, and a chain answered twice would
   * break the guest's ring (a used id that is not its head), so a death from here on is not answered
   * again: at worst this one request stays unanswered.
   */
  publishing(q: number): void {
    this.words[Flight.QUEUE] = -(q + 1);
  }

  /** After the push: the chain is answered. */
  end(): void {
    this.words[Flight.QUEUE] = 0;
  }

  /** The worker's epoll fd, or -1 for none. */
  setEpoll(fd: number): void {
    this.words[Flight.EPFD] = fd + 1;
  }

  /**
   * After a successful acquire: the id as its u32 halves (the low word is the table slot, the high one
   * its generation: both small integers, so no number is boxed on the way here).
   */
  pin(kind: number, lo: number, hi: number): void {
    const n = this.words[Flight.PINS]!;
    if (n < Flight.PIN_SLOTS) {
      // the u64 as the host's (little-endian) BigInt64Array reads it back (orphans.ts)
      this.idWords[2 * n] = lo;
      this.idWords[2 * n + 1] = hi;
      this.words[Flight.PIN_KIND + n] = kind;
    }
    this.words[Flight.PINS] = n + 1;
  }

  /**
   * Before the release: pins nest (withInode/withHandle in src/fs/passthrough/core.ts release in
   * finally blocks), so the release is of the top entry. Forgetting it first means a death between
   * the two leaks one pin rather than releasing it twice.
   */
  unpin(): void {
    const n = this.words[Flight.PINS]!;
    if (n > 0) this.words[Flight.PINS] = n - 1;
  }
}

type PinnedTableFns =
  | 'inodeInit' | 'inodeLookup' | 'inodeLastExisted' | 'inodeDev' | 'inodeAcquire' | 'inodeRelease' | 'inodeForget'
  | 'inodeDropAll' | 'inodeDrainNext' | 'inodeCount'
  | 'handleOpen' | 'handleAcquire' | 'handleRelease' | 'handleClose' | 'handleDrainNext' | 'handleCount'
  | 'handleDirPos' | 'handleSetDirPos';

/**
 * The shared inode and handle tables with every pin recorded in the worker's record: what the worker
 * hands its file system (it satisfies src/fs/tables.ts `Tables` structurally; the fs layer never sees
 * the record). Everything but acquire and release goes straight to the module.
 */
export class PinRecordingTables {
  constructor(
    private readonly vq: Pick<VqExports, PinnedTableFns>,
    private readonly flight: InFlight,
  ) {}

  inodeAcquire(nodeid: number): number {
    const fd = this.vq.inodeAcquire(nodeid);
    if (fd >= 0) this.flight.pin(Flight.PIN_INODE, nodeid % 0x1_0000_0000, Math.floor(nodeid / 0x1_0000_0000));
    return fd;
  }
  inodeRelease(nodeid: number): number {
    this.flight.unpin();
    return this.vq.inodeRelease(nodeid);
  }
  handleAcquire(fh: number): number {
    const fd = this.vq.handleAcquire(fh);
    if (fd >= 0) this.flight.pin(Flight.PIN_HANDLE, fh % 0x1_0000_0000, Math.floor(fh / 0x1_0000_0000));
    return fd;
  }
  handleRelease(fh: number): number {
    this.flight.unpin();
    return this.vq.handleRelease(fh);
  }

  inodeInit(rootFd: number, dev: bigint, ino: bigint): void {
    this.vq.inodeInit(rootFd, dev, ino);
  }
  inodeLookup(devLo: number, devHi: number, inoLo: number, inoHi: number, fd: number): number {
    return this.vq.inodeLookup(devLo, devHi, inoLo, inoHi, fd);
  }
  inodeLastExisted(): number {
    return this.vq.inodeLastExisted();
  }
  inodeDev(nodeid: number): bigint {
    return this.vq.inodeDev(nodeid);
  }
  inodeForget(nodeid: number, nlookup: number): number {
    return this.vq.inodeForget(nodeid, nlookup);
  }
  inodeDropAll(): void {
    this.vq.inodeDropAll();
  }
  inodeDrainNext(): number {
    return this.vq.inodeDrainNext();
  }
  inodeCount(): number {
    return this.vq.inodeCount();
  }
  handleOpen(fd: number, flags: number): number {
    return this.vq.handleOpen(fd, flags);
  }
  handleClose(fh: number): number {
    return this.vq.handleClose(fh);
  }
  handleDrainNext(): number {
    return this.vq.handleDrainNext();
  }
  handleCount(): number {
    return this.vq.handleCount();
  }
  handleDirPos(fh: number): bigint {
    return this.vq.handleDirPos(fh);
  }
  handleSetDirPos(fh: number, pos: bigint): void {
    this.vq.handleSetDirPos(fh, pos);
  }
}

/** Clears every worker's record (the pool, before any worker starts). */
export function clearRecords(buffer: ArrayBufferLike, controlBase: number, workers: number): void {
  for (let w = 0; w < workers; w++) {
    const { words } = recordViews(buffer, controlBase, w);
    words.fill(0);
  }
}
