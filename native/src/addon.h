// virtiofsd-ts native addon: the syscalls Node lacks. Shared by every source file of the addon: the
// per-env state, the argument helpers and the result conventions.
//
// Contract (docs/internals.md, "The native addon"): every syscall wrapper returns a non-negative result
// or -errno and never throws for a failed syscall; only wrong JS argument types (or a buffer slice outside
// its buffer) throw a TypeError. errno is captured immediately after the syscall and never wrapped.
// Every fd this addon creates is O_CLOEXEC.
//
// The addon is context-aware: worker_threads load it again, and all per-thread state (the window set by
// setWindow, the active fd watchers) lives in per-env instance data (Napi::Addon), never in globals.
//
// Files: functions.h lists every function (declared below, registered in addon.cc), constants.h every
// exported constant; the bodies live in sockets.cc, wait.cc, memory.cc, fs.cc, io.cc, xattr.cc and
// process.cc. The argument helpers are static: each source file gets its own copy, free to inline.

#ifndef VIRTIOFSD_NATIVE_ADDON_H
#define VIRTIOFSD_NATIVE_ADDON_H

#include <napi.h>
#include <uv.h>

#include <errno.h>
#include <stdint.h>
#include <string.h>

#include <string>
#include <unordered_map>

#include "functions.h"

static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__, "FUSE structs are written little endian with memcpy");

namespace virtiofsd {

constexpr size_t kNameMax = 255;   // NAME_MAX: one path component
constexpr size_t kPathMax = 4095;  // PATH_MAX - 1: symlink targets

// ---------------------------------------------------------------------------------------------------
// Per-env state

class NativeAddon;

// One uv_poll_t watcher. Owned by the uv handle: freed in the close callback. The JS side refers to it
// only by id through the per-env map, so a late or repeated stop() can never touch freed memory.
struct Watcher {
  uv_poll_t handle;
  napi_env env = nullptr;
  napi_ref cb = nullptr;
  napi_async_context actx = nullptr;
  NativeAddon* addon = nullptr;
  uint32_t id = 0;
};

class NativeAddon : public Napi::Addon<NativeAddon> {
 public:
  NativeAddon(Napi::Env env, Napi::Object exports);
  ~NativeAddon();

  // setWindow state (per thread / per env).
  uint8_t* winBase = nullptr;
  uint64_t winLen = 0;
  Napi::Reference<Napi::Value> winRef;  // keeps the window's buffer alive while winBase points into it

  std::unordered_map<uint32_t, Watcher*> watchers;
  uint32_t nextWatcherId = 1;
  bool cleanupRegistered = false;
  napi_env rawEnv = nullptr;

  void StopWatcher(uint32_t id, bool releaseJs);
  static void EnvCleanup(void* arg);

 private:
#define NATIVE_DECLARE(method, jsName) Napi::Value method(const Napi::CallbackInfo& info);
  NATIVE_FUNCTIONS(NATIVE_DECLARE)
#undef NATIVE_DECLARE
};

// ---------------------------------------------------------------------------------------------------
// Argument helpers. Each returns false after scheduling a TypeError; the caller then returns an empty
// Napi::Value (node-addon-api turns that into undefined with the pending exception). The number helpers
// zero `out` on failure, so the compiler can see it is never read uninitialized.

[[maybe_unused]] static bool typeError(const Napi::Env& env, const char* msg) {
  Napi::TypeError::New(env, msg).ThrowAsJavaScriptException();
  return false;
}

[[maybe_unused]] static bool argI32(const Napi::CallbackInfo& info, size_t i, int32_t& out) {
  if (i >= info.Length() || !info[i].IsNumber()) {
    out = 0;
    return typeError(info.Env(), "expected a number argument");
  }
  out = info[i].As<Napi::Number>().Int32Value();
  return true;
}

[[maybe_unused]] static bool argU32(const Napi::CallbackInfo& info, size_t i, uint32_t& out) {
  if (i >= info.Length() || !info[i].IsNumber()) {
    out = 0;
    return typeError(info.Env(), "expected a number argument");
  }
  out = info[i].As<Napi::Number>().Uint32Value();  // modular: -1 becomes 0xffffffff (chown "no change")
  return true;
}

[[maybe_unused]] static bool argI64(const Napi::CallbackInfo& info, size_t i, int64_t& out) {
  if (i >= info.Length() || !info[i].IsNumber()) {
    out = 0;
    return typeError(info.Env(), "expected a number argument");
  }
  out = info[i].As<Napi::Number>().Int64Value();
  return true;
}

// Non-negative offset/length (≤ 2^53).
[[maybe_unused]] static bool argU64(const Napi::CallbackInfo& info, size_t i, uint64_t& out) {
  if (i >= info.Length() || !info[i].IsNumber()) {
    out = 0;
    return typeError(info.Env(), "expected a number argument");
  }
  double d = info[i].As<Napi::Number>().DoubleValue();
  if (!(d >= 0) || d > 9007199254740992.0) {
    out = 0;
    return typeError(info.Env(), "expected a non-negative integer");
  }
  out = static_cast<uint64_t>(d);
  return true;
}

[[maybe_unused]] static bool argTyped(const Napi::CallbackInfo& info, size_t i, napi_typedarray_type want,
                                      uint8_t*& data, size_t& bytes, size_t& elems) {
  if (i >= info.Length() || !info[i].IsTypedArray()) return typeError(info.Env(), "expected a typed array");
  Napi::TypedArray ta = info[i].As<Napi::TypedArray>();
  if (ta.TypedArrayType() != want) return typeError(info.Env(), "wrong typed array type");
  napi_typedarray_type t;
  size_t length;
  void* p;
  napi_value ab;
  size_t byteOffset;
  if (napi_get_typedarray_info(info.Env(), ta, &t, &length, &p, &ab, &byteOffset) != napi_ok)
    return typeError(info.Env(), "bad typed array");
  data = static_cast<uint8_t*>(p);
  elems = length;
  bytes = ta.ByteLength();
  return true;
}

[[maybe_unused]] static bool argBytes(const Napi::CallbackInfo& info, size_t i, uint8_t*& data, size_t& len) {
  size_t elems;
  return argTyped(info, i, napi_uint8_array, data, len, elems);
}

[[maybe_unused]] static bool argI32Array(const Napi::CallbackInfo& info, size_t i, int32_t*& data, size_t& n) {
  uint8_t* p;
  size_t bytes;
  if (!argTyped(info, i, napi_int32_array, p, bytes, n)) return false;
  data = reinterpret_cast<int32_t*>(p);
  return true;
}

// buf (Uint8Array) at index i, off at i+1, len at i+2; the slice must lie inside the view.
[[maybe_unused]] static bool argSlice(const Napi::CallbackInfo& info, size_t i, uint8_t*& p, size_t& len) {
  uint8_t* data;
  size_t bytes;
  uint64_t off, l;
  if (!argBytes(info, i, data, bytes) || !argU64(info, i + 1, off) || !argU64(info, i + 2, l)) return false;
  if (off > bytes || l > bytes - off) return typeError(info.Env(), "slice outside the buffer");
  p = data + off;
  len = static_cast<size_t>(l);
  return true;
}

[[maybe_unused]] static bool argString(const Napi::CallbackInfo& info, size_t i, std::string& out) {
  if (i >= info.Length() || !info[i].IsString()) return typeError(info.Env(), "expected a string argument");
  out = info[i].As<Napi::String>().Utf8Value();
  return true;
}

// A guest name (or path): Uint8Array bytes without NUL, copied NUL-terminated. `isNull` when the JS value
// is null and nulls are allowed. err = -EINVAL (embedded NUL) or -ENAMETOOLONG, checked by the caller.
struct Name {
  char buf[kPathMax + 1];
  bool isNull = false;
  int err = 0;
};

[[maybe_unused]] static bool argName(const Napi::CallbackInfo& info, size_t i, Name& n, size_t max, bool allowNull) {
  if (allowNull && i < info.Length() && (info[i].IsNull() || info[i].IsUndefined())) {
    n.isNull = true;
    n.buf[0] = 0;
    return true;
  }
  uint8_t* p;
  size_t len;
  if (!argBytes(info, i, p, len)) return false;
  if (len > max) {
    n.err = -ENAMETOOLONG;
    return true;
  }
  if (memchr(p, 0, len) != nullptr) {
    n.err = -EINVAL;
    return true;
  }
  memcpy(n.buf, p, len);
  n.buf[len] = 0;
  return true;
}

// ---------------------------------------------------------------------------------------------------
// Results

static inline Napi::Value num(const Napi::Env& env, double v) { return Napi::Number::New(env, v); }
static inline Napi::Value res(const Napi::Env& env, long r) { return Napi::Number::New(env, r < 0 ? -errno : r); }

// Little-endian stores into an output buffer (the FUSE structs statAt and fstatfs fill).
static inline void put64(uint8_t* out, size_t off, uint64_t v) { memcpy(out + off, &v, 8); }
static inline void put32(uint8_t* out, size_t off, uint32_t v) { memcpy(out + off, &v, 4); }

#define ARGS_OR_THROW(cond) \
  do {                      \
    if (!(cond)) return Napi::Value(); \
  } while (0)

#define NAME_OR_ERR(n) \
  do {                 \
    if ((n).err) return num(env, (n).err); \
  } while (0)

// Retry a syscall on EINTR (docs/internals.md, "The native addon": EINTR means retry); yields the
// result, errno intact.
#define NOINTR(expr)                         \
  ({                                         \
    long _r;                                 \
    do {                                     \
      _r = (long)(expr);                     \
    } while (_r < 0 && errno == EINTR);      \
    _r;                                      \
  })

}  // namespace virtiofsd

#endif
