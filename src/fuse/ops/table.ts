/**
 * The dispatch table: which handler serves each FUSE opcode. An opcode missing here answers ENOSYS:
 * locks (GETLK/SETLK/SETLKW), INTERRUPT, BMAP, IOCTL, POLL, NOTIFY_REPLY, the DAX mappings, TMPFILE,
 * STATX and anything newer. Adding an opcode: its handler in the file of its family, and a row here.
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
  [Opcode.Mknod, { run: mknod }],
  [Opcode.Mkdir, { run: mkdir }],
  [Opcode.Symlink, { run: symlink }],
  [Opcode.Link, { run: link }],
  [Opcode.Create, { run: create }],
  [Opcode.Unlink, { run: unlink }],
  [Opcode.Rmdir, { run: rmdir }],
  [Opcode.Rename, { run: rename }],
  [Opcode.Rename2, { run: rename2 }],

  [Opcode.Getattr, { run: getattr }],
  [Opcode.Setattr, { run: setattr }],
  [Opcode.Readlink, { run: readlink }],
  [Opcode.Access, { run: access }],
  [Opcode.Statfs, { run: statfs }],
  [Opcode.Syncfs, { run: syncfs }],

  [Opcode.Open, { run: open }],
  [Opcode.Read, { run: read }],
  [Opcode.Write, { run: write }],
  [Opcode.Flush, { run: flush }],
  [Opcode.Release, { run: release }],
  [Opcode.Fsync, { run: fsync }],
  [Opcode.Fallocate, { run: fallocate }],
  [Opcode.Lseek, { run: lseek }],
  [Opcode.CopyFileRange, { run: copyFileRange }],

  [Opcode.Opendir, { run: opendir }],
  [Opcode.Readdir, { run: readdir }],
  [Opcode.Readdirplus, { run: readdirplus }],
  [Opcode.Releasedir, { run: releasedir }],
  [Opcode.Fsyncdir, { run: fsyncdir }],

  [Opcode.Setxattr, { run: setxattr }],
  [Opcode.Getxattr, { run: getxattr }],
  [Opcode.Listxattr, { run: listxattr }],
  [Opcode.Removexattr, { run: removexattr }],
];

/** Indexed by opcode (a dense array: one load per request). */
export const OPS: ReadonlyArray<Op | undefined> = (() => {
  const t = new Array<Op | undefined>(Math.max(...ROWS.map(([opcode]) => opcode)) + 1).fill(undefined);
  for (const [opcode, op] of ROWS) {
    if (t[opcode] !== undefined) throw new Error(`opcode ${opcode} in the dispatch table twice`);
    t[opcode] = op;
  }
  return t;
})();
