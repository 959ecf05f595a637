/**
 * Split-virtqueue wire constants (virtio 1.2 §2.7 "Split Virtqueues"; Linux
 * include/uapi/linux/virtio_ring.h). A leaf module: it imports nothing, and every layer (the daemon's
 * virtio glue, the driver-side queue of the frontend, tests) takes these names from here. The AS ring
 * engine has its own copies (AssemblyScript cannot import TypeScript); test/unit/abi-drift checks them.
 */

/** This descriptor continues via the `next` field. */
export const VIRTQ_DESC_F_NEXT = 1;
/** The device writes this buffer (otherwise it reads it). */
export const VIRTQ_DESC_F_WRITE = 2;
/** The buffer holds a table of descriptors (VIRTIO_F_INDIRECT_DESC). */
export const VIRTQ_DESC_F_INDIRECT = 4;
/** avail.flags: the driver asks for no interrupt (ignored once VIRTIO_F_EVENT_IDX is negotiated). */
export const VIRTQ_AVAIL_F_NO_INTERRUPT = 1;
/** used.flags: the device asks for no notification (ignored once VIRTIO_F_EVENT_IDX is negotiated). */
export const VIRTQ_USED_F_NO_NOTIFY = 1;

/** struct virtq_desc: u64 addr, u32 len, u16 flags, u16 next. */
export const VIRTQ_DESC_SIZE = 16;
