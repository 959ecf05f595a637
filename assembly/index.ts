// virtqueue.wasm: ring engine, chain parser, copies and shared tables (docs/internals.md).
// No allocation, no static data, no shared state in globals: every thread instantiates this module
// on the same shared memory.
export * from './layout';
export * from './errors';
export * from './virtio';
export { memtableClear, memtableAdd, memtableCount, gpaRegion, uaddrRegion } from './memtable';
export {
  apertureConfig, apertureOff, apertureWin, apertureMissPending, apertureFill, apertureDrop, apertureSpan, aperturePin,
  apertureUnpin, gpaToWin, uaddrToWin,
} from './aperture';
export {
  queueSetup, queueSetBase, queueGetBase, queueReset, queuePop, queuePush, queuePushQuiet, queueNotify, queueEnableNotify, queuePending,
  queueIsBroken, queueIsReady, queueSize,
} from './queue';
export { chainParse, chainNext } from './chain';
export { gather, scatter, subList } from './copy';
export {
  inodeInit, inodeLookup, inodeLastExisted, inodeDev, inodeAcquire, inodeRelease, inodeForget, inodeDropAll,
  inodeDrainNext, inodeCount,
} from './inodes';
export {
  handleInit, handleOpen, handleAcquire, handleFlags, handleRelease, handleClose, handleDrainNext, handleCount,
  handleDirPos, handleSetDirPos,
} from './handles';
export {
  drvSetup, drvChain, drvAdd, drvKick, drvReap, drvArm, drvReplyCheck, patternFill, patternCheck,
} from './driver';
