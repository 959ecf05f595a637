// Guest memory: mapping the frontend's memfds over the shared wasm memory (MAP_FIXED) and outside it
// (mapShared, for vectored I/O), memfds and seals.
// The JS wrapper (src/native.ts) passes a Uint8Array over the whole SharedArrayBuffer: Node 20's
// N-API has no SharedArrayBuffer accessor, but a typed array view over one is readable.

#include "addon.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <unistd.h>

namespace virtiofsd {

namespace {

// mmap(MAP_FIXED) over mem[off, off + len) of the wasm memory: 0, -EINVAL when the range is empty, not
// page aligned or outside mem, or -errno of mmap.
long mapOver(const Bytes& mem, uint64_t off, uint64_t len, int flags, int fd, off_t fileOff) {
  uint64_t page = static_cast<uint64_t>(sysconf(_SC_PAGESIZE));
  if (len == 0 || off % page != 0 || len % page != 0 || off > mem.len || len > mem.len - off ||
      reinterpret_cast<uintptr_t>(mem.data) % page != 0)
    return -EINVAL;
  void* r = mmap(mem.data + off, len, PROT_READ | PROT_WRITE, flags | MAP_FIXED, fd, fileOff);
  return r == MAP_FAILED ? -errno : 0;
}

}  // namespace

Napi::Value NativeAddon::MemoryAddress(const Napi::CallbackInfo& info) {
  Bytes mem;
  ARGS_OR_THROW(args(info, mem));
  return Napi::BigInt::New(info.Env(), static_cast<uint64_t>(reinterpret_cast<uintptr_t>(mem.data)));
}

Napi::Value NativeAddon::MapFixed(const Napi::CallbackInfo& info) {
  Bytes mem;
  uint64_t off, len, fileOff;
  int32_t fd;
  ARGS_OR_THROW(args(info, mem, off, len, fd, fileOff));
  return num(info.Env(), mapOver(mem, off, len, MAP_SHARED, fd, static_cast<off_t>(fileOff)));
}

Napi::Value NativeAddon::UnmapFixed(const Napi::CallbackInfo& info) {
  Bytes mem;
  uint64_t off, len;
  ARGS_OR_THROW(args(info, mem, off, len));
  // Replace (never munmap): the range belongs to the wasm memory reservation and must stay mapped.
  return num(info.Env(), mapOver(mem, off, len, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0));
}

// mmap(MAP_SHARED) of fd[fileOff, fileOff + len) anywhere in the address space (outside the wasm memory):
// the host mapping of a guest region for vectored I/O. The address (< 2^47, exact in a JS number) or -errno.
Napi::Value NativeAddon::MapShared(const Napi::CallbackInfo& info) {
  return callWith(info, [](int32_t fd, uint64_t fileOff, uint64_t len) -> long {
    if (len == 0) {
      errno = EINVAL;
      return -1;
    }
    void* r = mmap(nullptr, len, PROT_READ | PROT_WRITE, MAP_SHARED, fd, static_cast<off_t>(fileOff));
    return r == MAP_FAILED ? -1L : static_cast<long>(reinterpret_cast<uintptr_t>(r));
  });
}

// munmap of a mapping made by mapShared. 0 or -errno.
Napi::Value NativeAddon::UnmapShared(const Napi::CallbackInfo& info) {
  return callWith(info, [](uint64_t addr, uint64_t len) {
    return munmap(reinterpret_cast<void*>(static_cast<uintptr_t>(addr)), len);
  });
}

Napi::Value NativeAddon::MemfdCreate(const Napi::CallbackInfo& info) {
  std::string name;
  uint64_t size;
  Flag unsealable;
  ARGS_OR_THROW(args(info, name, size, unsealable));
  // Sealable, like QEMU's memory-backend-memfd, so a backend can forbid shrinking (SealShrink); a test
  // frontend can ask for one that is not (as other frontends' may be).
  int fd = memfd_create(name.c_str(), MFD_CLOEXEC | (unsealable.on ? 0 : MFD_ALLOW_SEALING));
  if (fd < 0) return num(info.Env(), -errno);
  if (size > 0 && ftruncate(fd, static_cast<off_t>(size)) < 0) return num(info.Env(), closeAfterError(fd));
  return num(info.Env(), fd);
}

// Guest RAM arrives as a memfd we map: if the frontend could later shrink it, touching the lost pages
// would raise SIGBUS in a worker. Make sure F_SEAL_SHRINK is set (QEMU's memfd backend seals by
// default). 0 if sealed (already or now), -errno if the fd cannot be sealed (not a memfd, or SEAL_SEAL).
Napi::Value NativeAddon::SealShrink(const Napi::CallbackInfo& info) {
  return callWith(info, [](int32_t fd) {
    int seals = fcntl(fd, F_GET_SEALS);
    if (seals < 0) return -1;
    if (seals & F_SEAL_SHRINK) return 0;
    return fcntl(fd, F_ADD_SEALS, F_SEAL_SHRINK);
  });
}

}  // namespace virtiofsd
