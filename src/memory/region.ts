/**
 * One guest memory region: the frontend's numbers checked, its fd checked (a regular file the region
 * lies inside, sealed against shrinking when it can be) and mapped whole outside the wasm memory for the
 * addon's vectored I/O. The fd stays open with the region: apertures are mapped from it.
 */
import fs from 'node:fs';
import { Errno, MemoryError } from '../errors.js';
import { native } from '../native.js';

export const PAGE_SIZE = 4096;

export interface RegionDesc {
  guestPhysAddr: bigint;
  memorySize: bigint;
  userspaceAddr: bigint;
  mmapOffset: bigint;
}

export interface MappedRegion extends RegionDesc {
  /** The region's fd, open while the region exists (apertures are mapped from it). */
  fd: number;
  /** Host address of the region's first byte (its mapping outside the wasm memory). */
  hva: bigint;
  /** That mapping: page aligned, [hostMap, hostMap + hostLen). */
  hostMap: number;
  hostLen: number;
  /** The file's page size (st_blksize: the huge page size on hugetlbfs). */
  pageSize: number;
  /** Resident: window address of the region's first byte, and the page-aligned window mapping. */
  win: number;
  mapStart: number;
  mapLen: number;
}

/** Checks a region's numbers before anything is mapped (they come from the frontend). */
function validate(r: RegionDesc): void {
  const U64 = (1n << 64n) - 1n;
  if (r.memorySize === 0n) throw new MemoryError('memory region of size 0', Errno.EINVAL);
  if (r.guestPhysAddr + r.memorySize - 1n > U64 || r.userspaceAddr + r.memorySize - 1n > U64) {
    throw new MemoryError('memory region wraps around the address space', Errno.EINVAL);
  }
  if (r.mmapOffset + r.memorySize > 1n << 53n) throw new MemoryError('memory region mmap offset too large', Errno.EINVAL);
}

/**
 * Maps a region outside the wasm memory; the fd is the region's from then on. `unsealed` is told the
 * errno when the fd cannot be sealed against shrinking (not a memfd). Throws MemoryError (the fd is
 * then still the caller's).
 */
export function openRegion(r: RegionDesc, fd: number, unsealed: (errno: number) => void): MappedRegion {
  validate(r);
  // Touching a mapping past the end of its file raises SIGBUS (survived, but fatal to the connection:
  // faults.ts): the region must lie inside the file as it is now (memfd and hugetlbfs files have a size).
  let st: fs.Stats;
  try {
    st = fs.fstatSync(fd);
  } catch (e) {
    throw new MemoryError(`memory region fd: ${(e as NodeJS.ErrnoException).code ?? e}`, Errno.EBADF);
  }
  if (!st.isFile()) throw new MemoryError('memory region fd is not a regular file (memfd, tmpfs or hugetlbfs expected)', Errno.EINVAL);
  // ... and must stay so: a memfd gets F_SEAL_SHRINK (QEMU's memfd backend sets it by default).
  const sealed = native.sealShrink(fd);
  if (sealed < 0) unsealed(-sealed);
  if (r.mmapOffset + r.memorySize > BigInt(st.size)) {
    throw new MemoryError(
      `memory region (offset 0x${r.mmapOffset.toString(16)} + size 0x${r.memorySize.toString(16)}) extends past the end of its file (0x${st.size.toString(16)})`,
      Errno.EINVAL,
    );
  }
  const delta = Number(r.mmapOffset % BigInt(PAGE_SIZE));
  const hostLen = Number(((r.memorySize + BigInt(delta) + BigInt(PAGE_SIZE - 1)) / BigInt(PAGE_SIZE)) * BigInt(PAGE_SIZE));
  const hostMap = native.mapShared(fd, Number(r.mmapOffset) - delta, hostLen);
  if (hostMap < 0) throw new MemoryError(`mmap of a guest memory region failed: errno ${-hostMap}`, -hostMap);
  return {
    ...r,
    fd,
    hva: BigInt(hostMap + delta),
    hostMap,
    hostLen,
    pageSize: Math.max(PAGE_SIZE, st.blksize),
    win: 0,
    mapStart: 0,
    mapLen: 0,
  };
}

/** Unmaps the host mapping and closes the fd (the window mapping is the caller's to drop first). */
export function closeRegion(m: MappedRegion): number {
  const rc = native.unmapShared(m.hostMap, m.hostLen);
  native.close(m.fd);
  return rc;
}

/** Page-aligned length of the region's mapping into the window, and the offset of its first byte in it. */
export function windowSpan(m: RegionDesc): { len: number; delta: number } {
  const delta = Number(m.mmapOffset % BigInt(PAGE_SIZE));
  return { len: Math.ceil((Number(m.memorySize) + delta) / PAGE_SIZE) * PAGE_SIZE, delta };
}
