import t, { type Test } from 'tap';
import { execFileSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { createSharedMemory, loadVirtqueueModule, type VqExports } from '../../src/virtio/wasm.js';
import { type StressResult, tableStress } from '../helpers/table-stress.js';

const memory = createSharedMemory();
const vq: VqExports = await loadVirtqueueModule(memory);
const L = vq.layout;
const ROOT_DEV = 0x803, ROOT_INO = 2, ROOT_FD = 3;
/** node ids and fhs are numbers: (gen << 32) | slot, below 2^53 (assembly/slots.ts) */
const id = (gen: number, slot: number) => gen * 2 ** 32 + slot;
/** inodeLookup with dev and ino as numbers (< 2^53 here), split into the u32 halves it takes */
const lookup = (dev: number, ino: number, fd: number) =>
  vq.inodeLookup(dev >>> 0, Math.floor(dev / 2 ** 32), ino >>> 0, Math.floor(ino / 2 ** 32), fd);

t.beforeEach(() => { vq.inodeInit(ROOT_FD, BigInt(ROOT_DEV), BigInt(ROOT_INO)); vq.handleInit(); });

t.test('root inode', async (t) => {
  t.equal(vq.inodeCount(), 1);
  t.equal(vq.inodeAcquire(1), ROOT_FD);
  t.equal(vq.inodeRelease(1), -1);
  t.equal(lookup(ROOT_DEV, ROOT_INO, 99), 1, 'looking the root up again gives nodeid 1');
  t.equal(vq.inodeLastExisted(), 1);
  t.equal(vq.inodeForget(1, 1000), -1, 'the root is never dropped');
  t.equal(vq.inodeAcquire(1), ROOT_FD);
  t.equal(vq.inodeRelease(1), -1);
  vq.inodeDropAll();
  t.equal(vq.inodeDrainNext(), -1, 'DESTROY keeps the root');
  t.equal(vq.inodeAcquire(1), ROOT_FD);
  t.equal(vq.inodeCount(), 1);
});

t.test('insert, existing, forget, stale nodeid after reuse', async (t) => {
  const a = lookup(5, 10, 100);
  t.equal(a, id(1, 2), 'first free slot is 2, gen 1');
  t.equal(vq.inodeLastExisted(), 0);
  t.equal(lookup(5, 10, 101), a);
  t.equal(vq.inodeLastExisted(), 1, 'caller closes its own fd 101');
  t.equal(lookup(6, 10, 102), id(1, 3), 'same ino, other dev: another inode');
  t.equal(vq.inodeLastExisted(), 0);
  t.equal(vq.inodeCount(), 3);
  t.equal(vq.inodeAcquire(a), 100);
  t.equal(vq.inodeRelease(a), -1);
  t.equal(vq.inodeForget(a, 1), -1, 'one lookup left');
  t.equal(vq.inodeAcquire(a), 100);
  t.equal(vq.inodeRelease(a), -1);
  t.equal(vq.inodeForget(a, 1), 100, 'last lookup gone: fd to close');
  t.equal(vq.inodeCount(), 2);
  t.equal(vq.inodeAcquire(a), -1, 'forgotten nodeid is stale');
  t.equal(vq.inodeForget(a, 1), -1);
  const b = lookup(5, 10, 103);
  t.equal(vq.inodeLastExisted(), 0, 'a forgotten inode is not found again');
  t.equal(b, id(2, 2), 'slot reused with a new generation');
  t.equal(vq.inodeAcquire(a), -1, 'old generation rejected');
  t.equal(vq.inodeRelease(a), -1);
  t.equal(vq.inodeAcquire(b), 103);
  t.equal(vq.inodeRelease(b), -1);
  t.equal(vq.inodeDev(b), 5n, 'inodeDev: the st_dev recorded with the inode');
  t.equal(vq.inodeForget(b, 50), 103, 'nlookup larger than the count drops to zero');
  t.equal(vq.inodeDev(b), 0n, 'inodeDev of a forgotten inode: 0');
  const live = lookup(77, 77, 104);
  // not ids at all: ≥ 2^53 (the guest's 2^64 - 1 arrives as 0, src/abi/fuse.ts getId, but the module
  // refuses the rest too), negative, a fraction of a real one, NaN
  for (const bad of [0, 2, id(0, 2), id(1, 1), id(7, 4000), id(1, L.INODE_MAX + 5), 2 ** 53, 2 ** 64, -live, live + 0.5, NaN]) {
    t.equal(vq.inodeAcquire(bad), -1, `unknown ${bad}`);
    t.equal(vq.inodeDev(bad), 0n, `inodeDev ${bad}`);
    t.equal(vq.inodeForget(bad, 1), -1);
    t.equal(vq.inodeRelease(bad), -1);
  }
  t.equal(vq.inodeForget(live, 1), 104, 'the live one was not touched');
});

t.test('pins: forget while pinned defers the close to the last release', async (t) => {
  const x = lookup(9, 9, 200);
  t.equal(vq.inodeAcquire(x), 200);
  t.equal(vq.inodeAcquire(x), 200);
  t.equal(vq.inodeForget(x, 1), -1, 'pinned: not closed yet');
  t.equal(vq.inodeCount(), 2, 'still occupies its slot');
  t.equal(vq.inodeAcquire(x), -1, 'no new users of a forgotten inode');
  const y = lookup(9, 9, 201);
  t.equal(vq.inodeLastExisted(), 0, 'unhashed at forget: a new lookup gets a fresh inode');
  t.not(y, x);
  t.equal(vq.inodeRelease(x), -1);
  t.equal(vq.inodeRelease(x), 200, 'last release returns the fd');
  t.equal(vq.inodeRelease(x), -1, 'and the nodeid is gone');
  t.equal(vq.inodeCount(), 2);
  t.equal(vq.inodeAcquire(y), 201);
  t.equal(vq.inodeRelease(y), -1);
  t.equal(vq.inodeRelease(y), -1, 'release without a pin is ignored');
  t.equal(vq.inodeForget(y, 1), 201);
});

t.test('generations have 21 bits: every id is an exact number below 2^53', async (t) => {
  const a = lookup(1, 1, 50);
  t.equal(vq.inodeForget(a, 1), 50);
  // Age slot 2 as if it had been reused ~2 million times.
  new DataView(memory.buffer).setUint32(L.INODE_SLOTS + 2 * L.INODE_STRIDE + 4, 0x1ffffe, true);
  const b = lookup(1, 2, 51);
  t.equal(b, id(0x1fffff, 2), 'the largest generation');
  t.ok(Number.isSafeInteger(b), 'below 2^53');
  t.equal(vq.inodeAcquire(b), 51);
  t.equal(vq.inodeRelease(b), -1);
  t.equal(vq.inodeForget(b, 1), 51);
  t.equal(lookup(1, 3, 52), id(1, 2), 'gen wraps past 0');
  // the same for a handle
  const h = vq.handleOpen(60, 0);
  t.equal(vq.handleClose(h), 60);
  new DataView(memory.buffer).setUint32(L.HANDLE_SLOTS + 1 * L.HANDLE_STRIDE + 4, 0x1fffff, true);
  t.equal(vq.handleOpen(61, 0), id(1, 1), 'a handle gen wraps past 0 too');
});

t.test('nlookup is saturated, never trapping', async (t) => {
  const a = lookup(3, 3, 70);
  lookup(3, 3, 71);
  t.equal(vq.inodeForget(a, NaN), -1, 'NaN drops nothing');
  t.equal(vq.inodeForget(a, -5), -1, 'a negative count drops nothing');
  t.equal(vq.inodeForget(a, 2 ** 64), 70, 'a huge count drops every lookup');
});

t.test('many inodes: hash chains, forget half, look the rest up again', async (t) => {
  const n = 20000;
  const ids: number[] = [];
  for (let i = 0; i < n; i++) ids.push(lookup(i % 7, i * 4096, 1000 + i));
  t.equal(new Set(ids).size, n, 'all distinct');
  t.equal(vq.inodeCount(), n + 1);
  let bad = 0;
  for (let i = 0; i < n; i += 2) if (vq.inodeForget(ids[i]!, 1) !== 1000 + i) bad++;
  t.equal(bad, 0, 'each forget returns its own fd');
  for (let i = 0; i < n; i++) {
    const again = lookup(i % 7, i * 4096, 5);
    const existed = vq.inodeLastExisted();
    if (i % 2 === 1 && (again !== ids[i] || existed !== 1)) bad++;
    if (i % 2 === 0 && (again === ids[i] || existed !== 0)) bad++;
  }
  t.equal(bad, 0, 'remaining inodes found, forgotten ones recreated');
  t.equal(vq.inodeCount(), n + 1);
});

t.test('inode table full', async (t) => {
  let last = 0;
  for (let i = 2; i < L.INODE_MAX; i++) last = lookup(1, i, i);
  t.equal(last, id(1, L.INODE_MAX - 1));
  t.equal(vq.inodeCount(), L.INODE_MAX - 1);
  t.equal(lookup(2, 2, 7), 0, 'full');
  t.equal(lookup(1, 5, 7), id(1, 5), 'known inodes still found when full');
  t.equal(vq.inodeForget(id(1, 5), 2), 5);
  t.equal(lookup(2, 2, 7), id(2, 5), 'a freed slot is reused');
});

t.test('DROP_ALL then drain', async (t) => {
  const a = lookup(1, 1, 11);
  const b = lookup(1, 2, 12);
  const c = lookup(1, 3, 13);
  lookup(1, 3, 99);
  t.equal(vq.inodeAcquire(b), 12);
  vq.inodeDropAll();
  t.equal(vq.inodeAcquire(a), -1);
  const fds: number[] = [];
  for (let fd = vq.inodeDrainNext(); fd !== -1; fd = vq.inodeDrainNext()) fds.push(fd);
  t.same(fds.sort(), [11, 13], 'unpinned fds, each once');
  t.equal(vq.inodeDrainNext(), -1);
  t.equal(vq.inodeCount(), 2, 'root and the pinned inode');
  t.equal(vq.inodeRelease(b), 12, 'pinned one returned by its release');
  t.equal(vq.inodeCount(), 1);
  t.equal(vq.inodeForget(c, 1), -1);
  const d = lookup(1, 2, 14);
  t.equal(vq.inodeLastExisted(), 0);
  vq.inodeDropAll();
  t.equal(vq.inodeDrainNext(), 14, 'cursor rewound for the next round');
  t.equal(vq.inodeAcquire(d), -1);
});

t.test('file handles', async (t) => {
  const h = vq.handleOpen(10, 0o2);
  t.equal(h, id(1, 1));
  t.equal(vq.handleCount(), 1);
  t.equal(vq.handleAcquire(h), 10);
  t.equal(vq.handleFlags(h), 0o2);
  t.equal(vq.handleClose(h), -1, 'pinned: deferred');
  t.equal(vq.handleAcquire(h), -1, 'closed');
  t.equal(vq.handleFlags(h), -1);
  t.equal(vq.handleClose(h), -2, 'closing twice');
  t.equal(vq.handleRelease(h), 10, 'last release returns the fd');
  t.equal(vq.handleCount(), 0);
  t.equal(vq.handleRelease(h), -1);
  const h2 = vq.handleOpen(20, 0);
  t.equal(h2, id(2, 1), 'slot reused with a new generation');
  t.equal(vq.handleAcquire(h), -1, 'stale fh');
  t.equal(vq.handleClose(h), -2);
  t.equal(vq.handleAcquire(h2), 20);
  t.equal(vq.handleRelease(h2), -1);
  t.equal(vq.handleRelease(h2), -1, 'release without a pin is ignored');
  t.equal(vq.handleClose(h2), 20, 'unpinned: close now');
  for (const bad of [0, 1, id(5, 1), id(1, L.HANDLE_MAX + 1), 2 ** 53, 2 ** 64, -h2, h2 + 0.5, NaN]) {
    t.equal(vq.handleAcquire(bad), -1);
    t.equal(vq.handleClose(bad), -2);
    t.equal(vq.handleRelease(bad), -1);
  }
});

t.test('handle table full and drain', async (t) => {
  const hs: number[] = [];
  for (let i = 1; i < L.HANDLE_MAX; i++) hs.push(vq.handleOpen(i, 0));
  t.equal(hs.length, L.HANDLE_MAX - 1);
  t.ok(hs.every((h) => h !== 0));
  t.equal(vq.handleOpen(5, 0), 0, 'full');
  t.equal(vq.handleClose(hs[4]!), 5);
  t.not(vq.handleOpen(6, 0), 0);
  vq.handleInit();
  const a = vq.handleOpen(30, 0), b = vq.handleOpen(31, 0), c = vq.handleOpen(32, 0);
  t.equal(vq.handleAcquire(b), 31);
  const fds: number[] = [];
  for (let fd = vq.handleDrainNext(); fd !== -1; fd = vq.handleDrainNext()) fds.push(fd);
  t.same(fds, [30, 32]);
  t.equal(vq.handleAcquire(a), -1);
  t.equal(vq.handleAcquire(b), -1, 'pinned handle is closed by the drain');
  t.equal(vq.handleRelease(b), 31);
  t.equal(vq.handleCount(), 0);
  t.equal(vq.handleClose(c), -2);
});

t.test('two worker threads share the tables without corrupting counts', { timeout: 60000 }, async (t) => {
  checkStress(t, await tableStress(memory, vq, 50_000));
});

t.test('... and so they do in the baseline wasm compiler (node --liftoff-only)', { timeout: 120000 }, async (t) => {
  // Liftoff is the tier every wasm function starts in; under --liftoff-only it never leaves it, so a
  // value Liftoff code loses under contention (assembly/slots.ts tableLock) shows every time.
  const script = fileURLToPath(new URL('../helpers/table-stress.js', import.meta.url));
  const out = execFileSync(process.execPath, ['--liftoff-only', script, '50000'], { encoding: 'utf8', timeout: 110_000 });
  checkStress(t, JSON.parse(out) as StressResult);
});

function checkStress(t: Test, s: StressResult): void {
  const [r0, r1] = s.workers;
  t.notOk(r0!.error ?? r1!.error, 'workers ran');
  t.equal(r0!.errors, 0);
  t.equal(r1!.errors, 0);
  t.equal(Number(r0!.created) + Number(r1!.created), Number(r0!.freed) + Number(r1!.freed), 'every created inode freed exactly once');
  t.ok(Number(r0!.created) > 3, 'inodes were recreated many times');
  t.equal(Number(r0!.sharedFound) + Number(r1!.sharedFound), 1, 'the workers did find each other\'s inodes');
  t.equal(r0!.handles, s.n);
  t.equal(r1!.handles, s.n);
  t.equal(s.inodeCount, 1, 'only the root is left');
  t.equal(s.handleCount, 0);
  t.equal(s.inodeLock, 0, 'inode lock free');
  t.equal(s.handleLock, 0, 'handle lock free');
}
