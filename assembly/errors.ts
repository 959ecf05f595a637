// Negative i32 error codes; mirrored as VqError in src/virtio/wasm.ts (test/unit/abi-drift compares them).
export const EMPTY: i32 = -1;
export const BROKEN: i32 = -2;
export const BAD_ADDR: i32 = -3;
export const BAD_LEN: i32 = -4;
export const LOOP: i32 = -5;
export const NESTED_INDIRECT: i32 = -6;
export const ORDER: i32 = -7;
export const TOO_MANY_SEGS: i32 = -8;
export const BAD_INDIRECT: i32 = -9;
export const BAD_HEAD: i32 = -10;
export const BAD_SIZE: i32 = -11;
export const ALIGN: i32 = -12;
export const FULL: i32 = -13;
/** An aperture onto guest memory is not mapped yet: the miss is recorded in the worker's scratch
 *  (SCR_MISS); map it (apertureFill) and call again. */
export const NEED_MAP: i32 = -14;
