/**
 * The shared inode and file-handle tables as the passthrough uses them (docs/internals.md, "Shared
 * tables"). In production these are the AssemblyScript exports over the shared linear memory, so every
 * worker sees the same node ids and handles. Node ids and handles are u64 bigints; fds are numbers.
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
  /** insert or add one lookup reference; 0n when full. inodeLastExisted() then says if it was known. */
  inodeLookup(dev: bigint, ino: bigint, fd: number): bigint;
  inodeLastExisted(): number;
  /** the st_dev recorded for a node id (0n: unknown); call with the node pinned */
  inodeDev(nodeid: bigint): bigint;
  /** pinned fd or -1 (stale/unknown) */
  inodeAcquire(nodeid: bigint): number;
  /** unpin; an fd to close (last user of a forgotten inode) or -1 */
  inodeRelease(nodeid: bigint): number;
  /** drop lookups; an fd to close or -1 */
  inodeForget(nodeid: bigint, nlookup: bigint): number;
  inodeDropAll(): void;
  inodeDrainNext(): number;
  inodeCount(): number;
}

export interface HandleTable {
  /** 0n when full */
  handleOpen(fd: number, flags: number): bigint;
  /** pinned fd or -1 */
  handleAcquire(fh: bigint): number;
  /** fd to close or -1 */
  handleRelease(fh: bigint): number;
  /** fd to close, -1 deferred (pinned), -2 unknown fh */
  handleClose(fh: bigint): number;
  handleDrainNext(): number;
  handleCount(): number;
}

export type Tables = InodeTable & HandleTable;
