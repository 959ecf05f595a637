/**
 * The dispatch table: which handler serves each FUSE opcode. An opcode missing here answers ENOSYS:
 * locks (GETLK/SETLK/SETLKW), INTERRUPT, BMAP, IOCTL, POLL, NOTIFY_REPLY, the DAX mappings, TMPFILE,
 * STATX and anything newer. Adding an opcode: its handler in the file of its family, and a row here,
 * marked `modifies` if any request of it changes the host tree (--readonly answers those EROFS; an
 * opcode whose requests may or may not write, OPEN and ACCESS, checks in its handler).
 */
import { Opcode } from '../../abi/fuse.js';
import type { Op } from '../handler.js';
import { destroy, init } from '../session.js';
import { access, getattr, readlink, setattr, statfs, syncfs } from './attr.js';
import { fsyncdir, opendir, readdir, readdirplus, releasedir } from './dir.js';
import {
  batchForget, create, forget, link, lookup, mkdir, mknod, rename, rename2, rmdir, symlink, unlink,
} from './entry.js';
import { copyFileRange, fallocate, flush, fsync, lseek, open, read, release, write } from './file.js';
import { getxattr, listxattr, removexattr, setxattr } from './xattr.js';

const ROWS: ReadonlyArray<readonly [Opcode, Op]> = [
  [Opcode.Init, { run: init, gate: 'init' }],
  [Opcode.Destroy, { run: destroy }],

  [Opcode.Lookup, { run: lookup }],
  [Opcode.Forget, { run: forget, gate: 'forget' }],
  [Opcode.BatchForget, { run: batchForget, gate: 'forget' }],
  [Opcode.Mknod, { run: mknod, modifies: true }],
  [Opcode.Mkdir, { run: mkdir, modifies: true }],
  [Opcode.Symlink, { run: symlink, modifies: true }],
  [Opcode.Link, { run: link, modifies: true }],
  [Opcode.Create, { run: create, modifies: true }],
  [Opcode.Unlink, { run: unlink, modifies: true }],
  [Opcode.Rmdir, { run: rmdir, modifies: true }],
  [Opcode.Rename, { run: rename, modifies: true }],
  [Opcode.Rename2, { run: rename2, modifies: true }],

  [Opcode.Getattr, { run: getattr }],
  [Opcode.Setattr, { run: setattr, modifies: true }],
  [Opcode.Readlink, { run: readlink }],
  [Opcode.Access, { run: access }],
  [Opcode.Statfs, { run: statfs }],
  [Opcode.Syncfs, { run: syncfs }],

  [Opcode.Open, { run: open }],
  [Opcode.Read, { run: read }],
  [Opcode.Write, { run: write, modifies: true }],
  [Opcode.Flush, { run: flush }],
  [Opcode.Release, { run: release }],
  [Opcode.Fsync, { run: fsync }],
  [Opcode.Fallocate, { run: fallocate, modifies: true }],
  [Opcode.Lseek, { run: lseek }],
  [Opcode.CopyFileRange, { run: copyFileRange, modifies: true }],

  [Opcode.Opendir, { run: opendir }],
  [Opcode.Readdir, { run: readdir }],
  [Opcode.Readdirplus, { run: readdirplus }],
  [Opcode.Releasedir, { run: releasedir }],
  [Opcode.Fsyncdir, { run: fsyncdir }],

  [Opcode.Setxattr, { run: setxattr, modifies: true }],
  [Opcode.Getxattr, { run: getxattr }],
  [Opcode.Listxattr, { run: listxattr }],
  [Opcode.Removexattr, { run: removexattr, modifies: true }],
];

/**
 * Indexed by opcode (a dense array: one load per request). Every entry gets all of Op's fields, so the
 * dispatch's loads of `gate`, `modifies` and `run` see one object shape, whichever the opcode.
 */
export const OPS: ReadonlyArray<Op | undefined> = (() => {
  const t = new Array<Op | undefined>(Math.max(...ROWS.map(([opcode]) => opcode)) + 1).fill(undefined);
  for (const [opcode, op] of ROWS) {
    if (t[opcode] !== undefined) throw new Error(`opcode ${opcode} in the dispatch table twice`);
    t[opcode] = { run: op.run, gate: op.gate, modifies: op.modifies };
  }
  return t;
})();
