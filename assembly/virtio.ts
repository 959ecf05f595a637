// Split-virtqueue wire constants (virtio 1.2 §2.7 "Split Virtqueues"; Linux
// include/uapi/linux/virtio_ring.h). AssemblyScript cannot import TypeScript, so these mirror
// src/abi/virtio.ts; they are exported so that test/unit/abi-drift can compare both sides.

/** This descriptor continues via the `next` field. */
export const VIRTQ_DESC_F_NEXT: u32 = 1;
/** The device writes this buffer (otherwise it reads it). */
export const VIRTQ_DESC_F_WRITE: u32 = 2;
/** The buffer holds a table of descriptors (VIRTIO_F_INDIRECT_DESC). */
export const VIRTQ_DESC_F_INDIRECT: u32 = 4;
/** avail.flags: the driver asks for no interrupt (ignored once VIRTIO_F_EVENT_IDX is negotiated). */
export const VIRTQ_AVAIL_F_NO_INTERRUPT: u32 = 1;
/** struct virtq_desc: u64 addr, u32 len, u16 flags, u16 next. */
export const VIRTQ_DESC_SIZE: u32 = 16;
/** used.flags: the device asks for no kick (ignored once VIRTIO_F_EVENT_IDX is negotiated). */
export const VIRTQ_USED_F_NO_NOTIFY: u32 = 1;
