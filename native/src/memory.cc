// Guest memory: mapping the frontend's memfds over the shared wasm memory (MAP_FIXED), memfds and seals.
// The JS wrapper (src/native.ts) passes a Uint8Array over the whole SharedArrayBuffer: Node 20's
// N-API has no SharedArrayBuffer accessor, but a typed array view over one is readable.

#include "addon.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <unistd.h>

namespace virtiofsd {

namespace {

bool checkMapRange(size_t bytes, uint64_t off, uint64_t len) {
  uint64_t page = static_cast<uint64_t>(sysconf(_SC_PAGESIZE));
  if (len == 0 || off % page != 0 || len % page != 0) return false;
  return off <= bytes && len <= bytes - off;
}

}  // namespace

Napi::Value NativeAddon::MemoryAddress(const Napi::CallbackInfo& info) {
  uint8_t* p;
  size_t len;
  ARGS_OR_THROW(argBytes(info, 0, p, len));
  return Napi::BigInt::New(info.Env(), static_cast<uint64_t>(reinterpret_cast<uintptr_t>(p)));
}

Napi::Value NativeAddon::MapFixed(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  uint8_t* p;
  size_t bytes;
  uint64_t off, len, fileOff;
  int32_t fd;
  ARGS_OR_THROW(argBytes(info, 0, p, bytes) && argU64(info, 1, off) && argU64(info, 2, len) &&
                argI32(info, 3, fd) && argU64(info, 4, fileOff));
  if (!checkMapRange(bytes, off, len) || reinterpret_cast<uintptr_t>(p) % sysconf(_SC_PAGESIZE) != 0)
    return num(env, -EINVAL);
  void* r = mmap(p + off, len, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_FIXED, fd, static_cast<off_t>(fileOff));
  if (r == MAP_FAILED) return num(env, -errno);
  return num(env, 0);
}

Napi::Value NativeAddon::UnmapFixed(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  uint8_t* p;
  size_t bytes;
  uint64_t off, len;
  ARGS_OR_THROW(argBytes(info, 0, p, bytes) && argU64(info, 1, off) && argU64(info, 2, len));
  if (!checkMapRange(bytes, off, len) || reinterpret_cast<uintptr_t>(p) % sysconf(_SC_PAGESIZE) != 0)
    return num(env, -EINVAL);
  // Replace (never munmap): the range belongs to the wasm memory reservation and must stay mapped.
  void* r = mmap(p + off, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, -1, 0);
  if (r == MAP_FAILED) return num(env, -errno);
  return num(env, 0);
}

Napi::Value NativeAddon::MemfdCreate(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  std::string name;
  uint64_t size;
  ARGS_OR_THROW(argString(info, 0, name) && argU64(info, 1, size));
  // Sealable, like QEMU's memory-backend-memfd, so a backend can forbid shrinking (SealShrink).
  int fd = memfd_create(name.c_str(), MFD_CLOEXEC | MFD_ALLOW_SEALING);
  if (fd < 0) return num(env, -errno);
  if (size > 0 && ftruncate(fd, static_cast<off_t>(size)) < 0) {
    int e = errno;
    close(fd);
    return num(env, -e);
  }
  return num(env, fd);
}

// Guest RAM arrives as a memfd we map: if the frontend could later shrink it, touching the lost pages
// would raise SIGBUS in a worker. Make sure F_SEAL_SHRINK is set (QEMU's memfd backend seals by
// default). 0 if sealed (already or now), -errno if the fd cannot be sealed (not a memfd, or SEAL_SEAL).
Napi::Value NativeAddon::SealShrink(const Napi::CallbackInfo& info) {
  int32_t fd;
  ARGS_OR_THROW(argI32(info, 0, fd));
  int seals = fcntl(fd, F_GET_SEALS);
  if (seals < 0) return num(info.Env(), -errno);
  if (seals & F_SEAL_SHRINK) return num(info.Env(), 0);
  return res(info.Env(), fcntl(fd, F_ADD_SEALS, F_SEAL_SHRINK));
}

}  // namespace virtiofsd
