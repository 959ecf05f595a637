/**
 * MapTables: a TEST DOUBLE of the shared inode/handle tables (src/fs/tables.ts, AssemblyScript over
 * shared memory) with the same contract, in plain JS Maps, for one thread only.
 */
import type { Tables } from '../../src/fs/tables.js';

/** TEST DOUBLE of the AssemblyScript inode/handle tables (src/fs/tables.ts), same contract, JS Maps. */
export class MapTables implements Tables {
  private inodes = new Map<bigint, { fd: number; key: string; nlookup: bigint; pins: number; forgotten: boolean }>();
  private byKey = new Map<string, bigint>();
  private handles = new Map<bigint, { fd: number; pins: number; closed: boolean }>();
  private nextSlot = 2n;
  private nextFh = 1n;
  private existed = 0;
  private drain: number[] = [];

  inodeInit(rootFd: number, dev: bigint, ino: bigint): void {
    this.inodes.clear(); this.byKey.clear();
    const key = `${dev}:${ino}`;
    this.inodes.set(1n, { fd: rootFd, key, nlookup: 1n, pins: 0, forgotten: false });
    this.byKey.set(key, 1n);
  }
  inodeLookup(dev: bigint, ino: bigint, fd: number): bigint {
    const key = `${dev}:${ino}`;
    const id = this.byKey.get(key);
    if (id !== undefined) {
      const e = this.inodes.get(id)!;
      if (id !== 1n) e.nlookup++;
      this.existed = 1;
      return id;
    }
    const nid = (7n << 32n) | this.nextSlot++;
    this.inodes.set(nid, { fd, key, nlookup: 1n, pins: 0, forgotten: false });
    this.byKey.set(key, nid);
    this.existed = 0;
    return nid;
  }
  inodeLastExisted(): number { return this.existed; }
  inodeDev(nodeid: bigint): bigint {
    const e = this.inodes.get(nodeid);
    return e && !e.forgotten ? BigInt(e.key.split(':')[0]!) : 0n;
  }
  inodeAcquire(nodeid: bigint): number {
    const e = this.inodes.get(nodeid);
    if (!e || e.forgotten) return -1;
    e.pins++;
    return e.fd;
  }
  inodeRelease(nodeid: bigint): number {
    const e = this.inodes.get(nodeid);
    if (!e || e.pins === 0) return -1;
    e.pins--;
    if (e.pins === 0 && e.forgotten) { this.inodes.delete(nodeid); return e.fd; }
    return -1;
  }
  inodeForget(nodeid: bigint, nlookup: bigint): number {
    const e = this.inodes.get(nodeid);
    if (!e || nodeid === 1n || e.forgotten) return -1;
    e.nlookup = nlookup >= e.nlookup ? 0n : e.nlookup - nlookup;
    if (e.nlookup > 0n) return -1;
    this.byKey.delete(e.key);
    e.forgotten = true;
    if (e.pins > 0) return -1;
    this.inodes.delete(nodeid);
    return e.fd;
  }
  inodeDropAll(): void {
    for (const [id, e] of this.inodes) {
      if (id === 1n) continue;
      this.byKey.delete(e.key);
      e.forgotten = true;
      if (e.pins === 0) { this.inodes.delete(id); this.drain.push(e.fd); }
    }
  }
  inodeDrainNext(): number { return this.drain.shift() ?? -1; }
  inodeCount(): number { return this.inodes.size; }
  /** test-only: the lookup count of a node id (undefined if unknown) */
  nlookup(nodeid: bigint): bigint | undefined { return this.inodes.get(nodeid)?.nlookup; }

  handleOpen(fd: number): bigint {
    const fh = (3n << 32n) | this.nextFh++;
    this.handles.set(fh, { fd, pins: 0, closed: false });
    return fh;
  }
  handleAcquire(fh: bigint): number {
    const h = this.handles.get(fh);
    if (!h || h.closed) return -1;
    h.pins++;
    return h.fd;
  }
  handleRelease(fh: bigint): number {
    const h = this.handles.get(fh);
    if (!h || h.pins === 0) return -1;
    h.pins--;
    if (h.pins === 0 && h.closed) { this.handles.delete(fh); return h.fd; }
    return -1;
  }
  handleClose(fh: bigint): number {
    const h = this.handles.get(fh);
    if (!h || h.closed) return -2;
    if (h.pins > 0) { h.closed = true; return -1; }
    this.handles.delete(fh);
    return h.fd;
  }
  handleDrainNext(): number {
    for (const [fh, h] of this.handles) {
      if (h.closed) continue;
      if (h.pins > 0) { h.closed = true; continue; }
      this.handles.delete(fh);
      return h.fd;
    }
    return -1;
  }
  handleCount(): number { return this.handles.size; }
}
