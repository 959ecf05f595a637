/**
 * A socket file the daemon created (the vhost-user socket, a unix: metrics address), to be removed at
 * shutdown. Inside the sandbox the daemon's root is the shared directory, so the path it was created at
 * now names something else, possibly a file of the guest's: removal goes through the parent directory
 * held open since creation, and only while that name still is the same socket (docs/sandbox.md).
 */
import fs from 'node:fs';
import path from 'node:path';
import { AttrOff } from './abi/fuse.js';
import { S_IFMT, S_IFSOCK } from './abi/stat.js';
import { C, STAT_OUT_SIZE, native } from './native.js';

export class SocketFile {
  private constructor(
    private dirFd: number,
    private readonly name: Uint8Array,
    private readonly ino: bigint,
    private readonly dev: bigint,
  ) {}

  /** Holds the socket now at `p` (its directory open, its inode noted); null if it is not a socket. */
  static hold(p: string): SocketFile | null {
    const abs = path.resolve(p);
    let dirFd: number;
    try {
      dirFd = fs.openSync(path.dirname(abs), C.O_PATH | C.O_DIRECTORY | C.O_CLOEXEC);
    } catch {
      return null;
    }
    const name = new Uint8Array(Buffer.from(path.basename(abs)));
    const st = stat(dirFd, name);
    if (st === null) {
      native.close(dirFd);
      return null;
    }
    return new SocketFile(dirFd, name, st.ino, st.dev);
  }

  /** Removes the socket file if it is still ours; closes the directory. Never throws. */
  remove(): void {
    if (this.dirFd < 0) return;
    const st = stat(this.dirFd, this.name);
    if (st !== null && st.ino === this.ino && st.dev === this.dev) native.unlinkat(this.dirFd, this.name, 0);
    native.close(this.dirFd);
    this.dirFd = -1;
  }
}

/** The socket's inode and device at dirFd/name, or null when that is no socket (or absent). */
function stat(dirFd: number, name: Uint8Array): { ino: bigint; dev: bigint } | null {
  const out = new Uint8Array(STAT_OUT_SIZE);
  if (native.statAt(dirFd, name, C.AT_SYMLINK_NOFOLLOW, out) < 0) return null;
  const v = new DataView(out.buffer);
  if ((v.getUint32(AttrOff.mode, true) & S_IFMT) !== S_IFSOCK) return null;
  return { ino: v.getBigUint64(AttrOff.ino, true), dev: v.getBigUint64(AttrOff.dev, true) };
}
