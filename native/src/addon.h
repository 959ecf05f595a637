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
// exported constant; the bodies live in sockets.cc, wait.cc, memory.cc, fs.cc, io.cc, xattr.cc,
// process.cc, sigbus.cc and seccomp.cc. Most bodies are callWith(info, lambda): the lambda's
// parameters say which arguments the function takes, and it returns what the syscall returned. The
// helpers are static inline: each source file gets its own copy, free to inline.

#ifndef VIRTIOFSD_NATIVE_ADDON_H
#define VIRTIOFSD_NATIVE_ADDON_H

#include <napi.h>
#include <uv.h>

#include <errno.h>
#include <stdint.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <atomic>
#include <string>
#include <tuple>
#include <type_traits>
#include <unordered_map>

#include "functions.h"

static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__, "FUSE structs are written little endian with memcpy");

namespace virtiofsd {

// The process's fd of /proc/self/fd (setProcFd), -1 until set: fds are process wide, so this one piece
// of state is a global (fs.cc).
inline std::atomic<int> procSelfFd{-1};

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

// Where the guest memory table lives in the window (setWindow): offsets and sizes from assembly/layout.ts.
struct GuestTable {
  uint64_t base = 0, entries = 0, stride = 0, max = 0, sizeOff = 0, hvaOff = 0;
};

class NativeAddon : public Napi::Addon<NativeAddon> {
 public:
  NativeAddon(Napi::Env env, Napi::Object exports);
  ~NativeAddon();

  // setWindow state (per thread / per env).
  uint8_t* winBase = nullptr;
  uint64_t winLen = 0;
  Napi::Reference<Napi::Value> winRef;  // keeps the window's buffer alive while winBase points into it
  GuestTable table;

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
// Arguments. A function reads its arguments with one call, args(info, a, b, ...): each `out` is filled
// from the next argument(s) by its type, left to right, stopping at the first wrong one after scheduling
// a TypeError. The caller then returns an empty Napi::Value (ARGS_OR_THROW; node-addon-api turns it into
// undefined with the pending exception). Numbers are zeroed on failure, so the compiler can see they are
// never read uninitialized. Everything here is static inline: no allocation and no JS call beyond the
// argument's own accessors.

struct Bytes {  // a Uint8Array
  uint8_t* data = nullptr;
  size_t len = 0;
};
struct Slice {  // three arguments (buf: Uint8Array, off, len): buf[off, off + len), inside buf
  uint8_t* data = nullptr;
  size_t len = 0;
};
struct Int32s {  // an Int32Array
  int32_t* data = nullptr;
  size_t len = 0;
};
struct Flag {  // an optional flag: the argument's truthiness, false when absent; never throws
  bool on = false;
};

// A guest name (or path): Uint8Array bytes without NUL, copied NUL-terminated, at most `max` bytes.
// `isNull` when the JS value is null or undefined and `nullable` allows it. err = -EINVAL (embedded NUL)
// or -ENAMETOOLONG, a result and not a TypeError: the caller checks it (NAME_OR_ERR) after all arguments.
struct Name {
  // buf is left uninitialized, even where a Name is value-initialized (as callWith's tuple is): a
  // user-provided constructor sees to that, and every type derived from Name declares one too. Only the
  // copied name and its NUL are ever read, and zeroing 4 KiB a call would cost.
  Name() {}
  char buf[kPathMax + 1];
  size_t max = kNameMax;
  bool nullable = false;
  bool isNull = false;
  int err = 0;
};
struct NameOrNull : Name {  // null: the dirfd itself
  NameOrNull() { nullable = true; }
};
struct LinkTarget : Name {  // a symlink target: a path, not one component
  LinkTarget() { max = kPathMax; }
};

[[maybe_unused]] static bool typeError(const Napi::Env& env, const char* msg) {
  Napi::TypeError::New(env, msg).ThrowAsJavaScriptException();
  return false;
}

// Argument i as a Napi::Number, or a TypeError.
static inline bool numberAt(const Napi::CallbackInfo& info, size_t i, Napi::Number& n) {
  if (i >= info.Length() || !info[i].IsNumber()) return typeError(info.Env(), "expected a number argument");
  n = info[i].As<Napi::Number>();
  return true;
}

// A number converted as Napi::Number's `kGet` converts it: Int32Value and Uint32Value are modular (-1
// becomes 0xffffffff, chown's "no change").
template <class T, T (Napi::Number::*kGet)() const>
static inline bool argNumber(const Napi::CallbackInfo& info, size_t& i, T& out) {
  Napi::Number n;
  bool ok = numberAt(info, i++, n);
  out = ok ? (n.*kGet)() : 0;
  return ok;
}

static inline bool arg(const Napi::CallbackInfo& info, size_t& i, int32_t& out) {
  return argNumber<int32_t, &Napi::Number::Int32Value>(info, i, out);
}
static inline bool arg(const Napi::CallbackInfo& info, size_t& i, uint32_t& out) {
  return argNumber<uint32_t, &Napi::Number::Uint32Value>(info, i, out);
}
static inline bool arg(const Napi::CallbackInfo& info, size_t& i, int64_t& out) {
  return argNumber<int64_t, &Napi::Number::Int64Value>(info, i, out);
}

// A non-negative offset or length (≤ 2^53).
static inline bool arg(const Napi::CallbackInfo& info, size_t& i, uint64_t& out) {
  Napi::Number n;
  out = 0;
  if (!numberAt(info, i++, n)) return false;
  double d = n.DoubleValue();
  if (!(d >= 0) || d > 9007199254740992.0) return typeError(info.Env(), "expected a non-negative integer");
  out = static_cast<uint64_t>(d);
  return true;
}

static inline bool arg(const Napi::CallbackInfo& info, size_t& i, std::string& out) {
  if (i >= info.Length() || !info[i].IsString()) return typeError(info.Env(), "expected a string argument");
  out = info[i++].As<Napi::String>().Utf8Value();
  return true;
}

static inline bool arg(const Napi::CallbackInfo& info, size_t& i, Flag& out) {
  out.on = i < info.Length() && info[i].ToBoolean().Value();
  i++;
  return true;
}

// A typed array of type `want`: its data, byte length and element count.
static inline bool typedAt(const Napi::CallbackInfo& info, size_t i, napi_typedarray_type want, uint8_t*& data,
                           size_t& bytes, size_t& elems) {
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

static inline bool arg(const Napi::CallbackInfo& info, size_t& i, Bytes& out) {
  size_t elems;
  return typedAt(info, i++, napi_uint8_array, out.data, out.len, elems);
}

static inline bool arg(const Napi::CallbackInfo& info, size_t& i, Int32s& out) {
  uint8_t* p = nullptr;
  size_t bytes;
  if (!typedAt(info, i++, napi_int32_array, p, bytes, out.len)) return false;
  out.data = reinterpret_cast<int32_t*>(p);
  return true;
}

static inline bool arg(const Napi::CallbackInfo& info, size_t& i, Slice& out) {
  Bytes buf;
  uint64_t off, len;
  if (!arg(info, i, buf) || !arg(info, i, off) || !arg(info, i, len)) return false;
  if (off > buf.len || len > buf.len - off) return typeError(info.Env(), "slice outside the buffer");
  out.data = buf.data + off;
  out.len = static_cast<size_t>(len);
  return true;
}

static inline bool arg(const Napi::CallbackInfo& info, size_t& i, Name& n) {
  if (n.nullable && i < info.Length() && (info[i].IsNull() || info[i].IsUndefined())) {
    i++;
    n.isNull = true;
    n.buf[0] = 0;
    return true;
  }
  Bytes b;
  if (!arg(info, i, b)) return false;
  if (b.len > n.max) {
    n.err = -ENAMETOOLONG;
    return true;
  }
  if (memchr(b.data, 0, b.len) != nullptr) {
    n.err = -EINVAL;
    return true;
  }
  memcpy(n.buf, b.data, b.len);
  n.buf[b.len] = 0;
  return true;
}

// The arguments from the first on, each read by the type of its `out` (a file's own argument types add
// their `arg` overloads before they call this).
template <class... T>
static inline bool args(const Napi::CallbackInfo& info, T&... out) {
  size_t i = 0;
  return (arg(info, i, out) && ...);
}

// The first name error among `values` (its Names; other values have none), or 0.
template <class T>
static inline int nameErrOf(const T& v) {
  if constexpr (std::is_base_of_v<Name, T>)
    return v.err;
  else
    return 0;
}
template <class... T>
static inline int nameErr(const T&... values) {
  int e = 0;
  ((e = e != 0 ? e : nameErrOf(values)), ...);
  return e;
}

// ---------------------------------------------------------------------------------------------------
// Results

static inline Napi::Value num(const Napi::Env& env, double v) { return Napi::Number::New(env, v); }
static inline Napi::Value res(const Napi::Env& env, long r) { return Napi::Number::New(env, r < 0 ? -errno : r); }

// An fd whose setup failed after it was created: closed, and the setup's -errno (close may change errno).
static inline long closeAfterError(int fd) {
  int e = errno;
  close(fd);
  return -e;
}

// An unsigned number in decimal into out (room for 10 digits); its length. Async-signal-safe: the
// launcher child before execve and the SIGSYS handler format numbers with it.
static inline size_t formatDecimal(char* out, uint32_t v) {
  char rev[10];
  size_t n = 0;
  do {
    rev[n++] = static_cast<char>('0' + v % 10);
    v /= 10;
  } while (v != 0);
  for (size_t i = 0; i < n; i++) out[i] = rev[n - 1 - i];
  return n;
}

// Every entry of the directory open at fd, from where it is, as fn(name); 0 or -errno. The raw
// getdents64 records (struct linux_dirent64: d_reclen at 16, d_name at 19), no allocation.
template <class Fn>
static inline long forEachDirent(int fd, Fn fn) {
  alignas(8) char buf[4096];
  for (;;) {
    long n = syscall(SYS_getdents64, fd, buf, sizeof(buf));
    if (n < 0) return -errno;
    if (n == 0) return 0;
    for (long off = 0; off < n;) {
      uint16_t reclen;
      memcpy(&reclen, buf + off + 16, 2);
      fn(static_cast<const char*>(buf + off + 19));
      off += reclen;
    }
  }
}

// Little-endian stores into an output buffer (the FUSE structs statAt and fstatfs fill).
static inline void put64(uint8_t* out, size_t off, uint64_t v) { memcpy(out + off, &v, 8); }
static inline void put32(uint8_t* out, size_t off, uint32_t v) { memcpy(out + off, &v, 4); }

// An output buffer the caller must size for a whole struct: shorter is the caller's bug, a TypeError.
static inline bool outHolds(const Napi::Env& env, const Bytes& out, size_t need, const char* msg) {
  return out.len >= need || typeError(env, msg);
}

// A lambda's parameter types, as the tuple of values args() fills for it.
template <class Fn>
struct ParamsOf : ParamsOf<decltype(&Fn::operator())> {};
template <class C, class R, class... A>
struct ParamsOf<R (C::*)(A...) const> {
  static_assert(((!std::is_base_of_v<Name, std::decay_t<A>> || std::is_reference_v<A>) && ...),
                "take a Name by reference: it holds a 4 KiB buffer");
  using Values = std::tuple<std::decay_t<A>...>;
};

// The common wrapper: reads the JS arguments as fn's parameters (args; a wrong one throws), answers a
// Name's error (NAME_OR_ERR), else calls fn and answers its syscall-style result with res (-1 and
// errno become -errno). fn runs no JS, so errno reaches res untouched. All inline: the same code as
// written out by hand.
template <class Fn>
static inline Napi::Value callWith(const Napi::CallbackInfo& info, Fn fn) {
  typename ParamsOf<Fn>::Values values;
  if (!std::apply([&info](auto&... v) { return args(info, v...); }, values)) return Napi::Value();
  if (int e = std::apply([](const auto&... v) { return nameErr(v...); }, values)) return num(info.Env(), e);
  return res(info.Env(), std::apply(fn, values));
}

#define ARGS_OR_THROW(cond) \
  do {                      \
    if (!(cond)) return Napi::Value(); \
  } while (0)

// Returns the first name error (-EINVAL, -ENAMETOOLONG) of the names given, as the call's result.
#define NAME_OR_ERR(...) \
  do {                 \
    if (int nameErr_ = nameErr(__VA_ARGS__)) return num(info.Env(), nameErr_); \
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
