/**
 * The test and bench harness: everything needed to boot a real Linux guest under QEMU against a
 * vhost-user-fs backend (ours or the reference) and to measure it. One module per job:
 *
 *   locations     repository root, cache directory, binaries (env overrides), PATH lookup
 *   kernel        guest kernel discovery (/boot/vmlinuz-* with /lib/modules)
 *   cpio          newc archive writer
 *   initramfs     the cached base image (busybox, virtiofs modules, /init)
 *   qemu          one guest boot: command line, timeout, retry on an early emulation panic
 *   console       guest console markers and their parsers, the guest shell prelude, ConsoleWatch
 *   guest-memory  the guest's view of its RAM (meminfo, iomem, memory blocks, zones): shell + parser
 *   daemon        our daemon and the reference: spawn, wait for the socket, stop
 *   requirements  what a boot needs on the host (skip reasons)
 *   proc-cpu      /proc CPU sampling of a daemon, QEMU and the host
 *   proc-mem      /proc RSS sampling of QEMU and a daemon, host MemAvailable
 *   qmp           a QMP client: drive a running guest's machine (memory hot-plug, stop/cont)
 *
 * docs/testing.md describes the host setup and the facts the QEMU options rest on.
 */
export * from './console.js';
export * from './cpio.js';
export * from './daemon.js';
export * from './guest-memory.js';
export * from './initramfs.js';
export * from './kernel.js';
export * from './locations.js';
export * from './proc-cpu.js';
export * from './proc-mem.js';
export * from './qemu.js';
export * from './qmp.js';
export * from './requirements.js';
