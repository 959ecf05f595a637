// Fixed addresses in the one shared linear memory (docs/internals.md, "One shared linear memory").
// WASM globals are per instance, so every piece of shared state lives at one of these addresses.
// All constants are exported as immutable globals; the TS loader reads them once (by the names in
// LAYOUT_KEYS, src/virtio/wasm.ts; test/unit/abi-drift checks that it names them all).

/** 64 KiB owned by TS (src/virtio/control.ts). */
export const CONTROL_BASE: u32 = 0x100000;
export const CONTROL_SIZE: u32 = 0x10000;

/** Memory table: u32 count at +0, entries from +MEMTABLE_ENTRIES, MEMTABLE_STRIDE bytes each, sorted by
 *  guest-physical address (MT_* offsets below). The main thread writes it only while every worker is paused. */
export const MEMTABLE_BASE: u32 = 0x120000;
export const MEMTABLE_ENTRIES: u32 = 64;
export const MEMTABLE_STRIDE: u32 = 64;
/** QEMU accepts up to 512 memory slots from a backend (vhost-user "Memory slots"); 509 is libvhost-user's
 *  figure. The table holds 512. */
export const MAX_REGIONS: u32 = 512;
export const MEMTABLE_SIZE: u32 = 0x10000;
/** Entry fields: guest-physical address, size, frontend (user) address, host address of the mapping the
 *  addon's vectored I/O uses, offset of the region in its fd, window address when the whole region is
 *  mapped into the window (0: reached through apertures), the fd (kept open while the region exists). */
export const MT_GPA: u32 = 0;
export const MT_SIZE: u32 = 8;
export const MT_UADDR: u32 = 16;
export const MT_HVA: u32 = 24;
export const MT_FILE_OFF: u32 = 32;
export const MT_WIN: u32 = 40;
export const MT_FD: u32 = 44;

/** Aperture cache (assembly/aperture.ts): a header, one u32 clock per partition, then APERTURE_MAX_SLOTS
 *  entries {u64 key, u32 stamp, u32 pad}. */
export const APERTURE_BASE: u32 = 0x130000;
export const APERTURE_SIZE: u32 = 0x10000;
export const APERTURE_CLOCKS: u32 = 64;
export const APERTURE_ENTRIES: u32 = 0x200;
export const APERTURE_STRIDE: u32 = 16;
export const APERTURE_MAX_SLOTS: u32 = 2048;
/** Guest memory is cut into 2 MiB granules of its file; an aperture maps a granule and the one after it
 *  (4 MiB), so any object of up to 2 MiB that starts in the granule is contiguous in the window. */
export const GRANULE_SHIFT: u32 = 21;
export const APERTURE_SLOT_SIZE: u32 = 4 << 20;
/** Slots of partition 0, the rings' pinned apertures (3 per queue), owned by the main thread. */
export const APERTURE_PINNED: u32 = 48;
/** Set-associative lookup: each worker partition is cut into sets of this many slots. */
export const APERTURE_WAYS: u32 = 8;

/** Queue table: MAX_QUEUES records of QUEUE_STRIDE bytes (offsets Q_* below). */
export const QUEUE_BASE: u32 = 0x111000;
export const QUEUE_STRIDE: u32 = 128;
export const MAX_QUEUES: u32 = 16;

/** Per-worker counters: u64 aperture hits at +STAT_APERTURE_HITS, misses at +STAT_APERTURE_MISSES. */
export const STATS_BASE: u32 = 0x112000;
export const STATS_STRIDE: u32 = 256;
export const STAT_APERTURE_HITS: u32 = 0;
export const STAT_APERTURE_MISSES: u32 = 8;
export const MAX_WORKERS: u32 = 32;

/** Inode table: header (64 B), INODE_MAX slots of INODE_STRIDE bytes, then INODE_MAX u32 hash buckets.
 *  2^20 inodes: as many as the default open-file limit (every inode is an O_PATH fd), so that limit,
 *  not the table, bounds how many inodes a guest can hold (52 MiB, touched only as slots are used). */
export const INODE_BASE: u32 = 0x1800000;
export const INODE_MAX: u32 = 1 << 20;
export const INODE_STRIDE: u32 = 48;
export const INODE_SLOTS: u32 = INODE_BASE + 64;
export const INODE_BUCKETS: u32 = INODE_SLOTS + INODE_MAX * INODE_STRIDE;
export const INODE_SIZE: u32 = 64 + INODE_MAX * INODE_STRIDE + INODE_MAX * 4;

/** Directory positions: an i64 per handle slot (HANDLE_MAX of them), the file position each open
 *  directory's fd was left at (assembly/handles.ts handleDirPos), in the gap between the inode table and
 *  the window. */
export const DIRPOS_BASE: u32 = 0x4C10000;

/** Handle table: header (64 B), HANDLE_MAX slots of HANDLE_STRIDE bytes. */
export const HANDLE_BASE: u32 = 0x200000;
export const HANDLE_MAX: u32 = 1 << 18;
export const HANDLE_STRIDE: u32 = 16;
export const HANDLE_SLOTS: u32 = HANDLE_BASE + 64;
export const HANDLE_SIZE: u32 = 64 + HANDLE_MAX * HANDLE_STRIDE;

/** Per-worker scratch: worker w owns [SCRATCH_BASE + w*SCRATCH_SIZE, +SCRATCH_SIZE). */
export const SCRATCH_BASE: u32 = 0x800000;
export const SCRATCH_SIZE: u32 = 0x80000;
export const MAX_SEGS: u32 = 2048;
export const INBUF_SIZE: u32 = 132 * 1024;
export const OUTBUF_SIZE: u32 = 132 * 1024;
/** Scratch header: u32 rcount, wcount, rtotal, wtotal. */
export const SCR_RCOUNT: u32 = 0;
export const SCR_WCOUNT: u32 = 4;
export const SCR_RTOTAL: u32 = 8;
export const SCR_WTOTAL: u32 = 12;
/** An aperture miss: u32 pending, u32 region, u64 granule; then the mapping to make (apertureFill), at
 *  the MISS_JOB_* offsets from SCR_MISS: u32 window address, i32 fd, u64 file offset, u32 length. */
export const SCR_MISS: u32 = 16;
export const SCR_MISS_SIZE: u32 = 40;
export const MISS_JOB_WIN: u32 = 16;
export const MISS_JOB_FD: u32 = 20;
export const MISS_JOB_FILE_OFF: u32 = 24;
export const MISS_JOB_LEN: u32 = 32;
export const SCR_STAT: u32 = 64;
export const SCR_STAT_SIZE: u32 = 128;
/** chainNext's results beside the counts: i32 chainParse result, u32 bytes of the readable part gathered,
 *  i32 the head popped (-1 before the pop: a caller whose chainNext trapped learns which head it holds). */
export const SCR_PARSE: u32 = 192;
export const SCR_GOT: u32 = 196;
export const SCR_HEAD: u32 = 200;
/** Segment lists: SEG_STRIDE bytes an entry, {u64 offset in the region, u32 len, u32 region}. */
export const SEG_STRIDE: u32 = 16;
export const SCR_RLIST: u32 = 0x100;
export const SCR_WLIST: u32 = SCR_RLIST + MAX_SEGS * SEG_STRIDE;
export const SCR_SUBLIST: u32 = SCR_WLIST + MAX_SEGS * SEG_STRIDE;
export const SCR_INBUF: u32 = 0x20000;
export const SCR_OUTBUF: u32 = SCR_INBUF + INBUF_SIZE;

/** The driver side of the rings, for the load tester (src/loadtest/; assembly/driver.ts): a record per
 *  queue (DRV_STRIDE bytes, D_* offsets), a list of used elements per queue filled by drvReap
 *  ({u32 id, u32 len}), and the chain shapes a request is laid out by (a header {u32 count, replyOff,
 *  replyCap, reqLen}, then count entries {u32 offset in the slot, u32 len, u32 flags}). The daemon never
 *  touches this area. */
export const DRV_BASE: u32 = 0x610000;
export const DRV_STRIDE: u32 = 128;
export const DRV_MAX_QUEUES: u32 = 64;
export const DRV_REAP: u32 = DRV_BASE + DRV_MAX_QUEUES * DRV_STRIDE;
export const DRV_REAP_MAX: u32 = 256;
export const DRV_SHAPES: u32 = DRV_REAP + DRV_MAX_QUEUES * DRV_REAP_MAX * 8;
export const DRV_SHAPE_STRIDE: u32 = 8192;
export const DRV_MAX_SHAPES: u32 = 32;
/** Buffers in one chain: header and arguments plus 4 KiB pages of up to 1 MiB of data, with room to spare;
 *  an indirect table of that many descriptors fits a DRV_TABLE_STRIDE. */
export const DRV_SHAPE_MAX_SEGS: u32 = 500;
export const DRV_TABLE_STRIDE: u32 = 8192;
export const D_SIZE: u32 = 0;
export const D_DESC: u32 = 4;
export const D_AVAIL: u32 = 8;
export const D_USED: u32 = 12;
export const D_AVAIL_IDX: u32 = 16;
export const D_KICKED_IDX: u32 = 20;
export const D_LAST_USED: u32 = 24;
export const D_EVENT_IDX: u32 = 28;
export const D_INDIRECT: u32 = 32;
export const D_SLOT_BYTES: u32 = 36;
export const D_DATA_GPA: u32 = 40;
export const D_TABLE_GPA: u32 = 48;
export const D_DATA_WIN: u32 = 56;
export const D_TABLE_WIN: u32 = 60;
export const D_SLOT_DESCS: u32 = 64;

/** The guest window: whole regions (when they all fit) or apertures are mapped in [WINDOW_BASE, WINDOW_END). */
export const WINDOW_BASE: u32 = 80 << 20;
export const WINDOW_END: u32 = 0xFFFF0000;

// Queue record offsets (internal to AS, exported for tests and diagnostics).
export const Q_LOCK: u32 = 0;
export const Q_SIZE: u32 = 4;
export const Q_DESC: u32 = 8;
export const Q_AVAIL: u32 = 12;
export const Q_USED: u32 = 16;
export const Q_LAST_AVAIL: u32 = 20;
export const Q_NEXT_USED: u32 = 24;
export const Q_EVENT_IDX: u32 = 28;
export const Q_BROKEN: u32 = 32;
export const Q_READY: u32 = 36;
/** Used index when the device last decided whether to notify (queueNotify): replies pushed since then are
 *  covered by the next decision, so notifications can be batched (the `old` of vring_need_event). */
export const Q_SIGNALLED: u32 = 40;
