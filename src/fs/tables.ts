/**
 * The shared inode and file-handle tables as the passthrough uses them (docs/internals.md, "Shared
 * tables"). In production these are the AssemblyScript exports over the shared linear memory, so every
 * worker sees the same node ids and handles. Node ids and handles are numbers: the tables make every
 * id below 2^53 (assembly/slots.ts), so one crosses between JavaScript and WebAssembly as an exact f64
 * without a BigInt; a number that is not an id of theirs (a guest's id ≥ 2^53 arrives as 0) is unknown.
 * fds are numbers.
 *
 * This is the fs layer's own narrow view, not a copy to keep in step: the fs layer cannot import the
 * virtio layer's `VqExports` (src/virtio/wasm.ts), which satisfies these interfaces structurally; the
 * compiler checks that where src/worker.ts wraps the module (PinRecordingTables, which journals each
 * pin for the case of a dying worker) and hands it to the passthrough, and test/unit/abi-drift checks
 * it too.
 */
export interface InodeTable {
  /** clear the table and make (dev, ino) with rootFd node id 1 */
  inodeInit(rootFd: number, dev: bigint, ino: bigint): void;
  /**
   * insert or add one lookup reference; 0 when full. inodeLastExisted() then says if it was known.
   * st_dev and st_ino come as u32 halves (lo, hi): no BigInt per lookup.
   */
  inodeLookup(devLo: number, devHi: number, inoLo: number, inoHi: number, fd: number): number;
  inodeLastExisted(): number;
  /** the st_dev recorded for a node id (0n: unknown); call with the node pinned */
  inodeDev(nodeid: number): bigint;
  /** pinned fd or -1 (stale/unknown) */
  inodeAcquire(nodeid: number): number;
  /** unpin; an fd to close (last user of a forgotten inode) or -1 */
  inodeRelease(nodeid: number): number;
  /** drop lookups; an fd to close or -1 */
  inodeForget(nodeid: number, nlookup: number): number;
  inodeDropAll(): void;
  inodeDrainNext(): number;
  inodeCount(): number;
}

export interface HandleTable {
  /** 0 when full */
  handleOpen(fd: number, flags: number): number;
  /** pinned fd or -1 */
  handleAcquire(fh: number): number;
  /** fd to close or -1 */
  handleRelease(fh: number): number;
  /** fd to close, -1 deferred (pinned), -2 unknown fh */
  handleClose(fh: number): number;
  handleDrainNext(): number;
  handleCount(): number;
  /** where READDIR left the open directory's fd (0 after handleOpen), -1n for an unknown fh */
  handleDirPos(fh: number): bigint;
  /** record where READDIR left it (-1n: unknown, seek next time) */
  handleSetDirPos(fh: number, pos: bigint): void;
}

export type Tables = InodeTable & HandleTable;
