// virtiofsd-ts native addon: the syscalls Node lacks.
//
// Contract (docs/internals.md, "The native addon"): every syscall wrapper returns a non-negative result
// or -errno and never throws for a failed syscall; only wrong JS argument types (or a buffer slice outside
// its buffer) throw a TypeError. errno is captured immediately after the syscall and never wrapped.
// Every fd this addon creates is O_CLOEXEC.
//
// The addon is context-aware: worker_threads load it again, and all per-thread state (the window set by
// setWindow, the active fd watchers) lives in per-env instance data (Napi::Addon), never in globals.

#include <napi.h>
#include <uv.h>

#include <errno.h>
#include <limits.h>
#include <fcntl.h>
#include <poll.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <linux/falloc.h>
#include <linux/fs.h>
#include <linux/openat2.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <sys/uio.h>
#include <sys/un.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <unordered_map>
#include <vector>

static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__, "FUSE structs are written little endian with memcpy");

#ifndef RENAME_NOREPLACE
#define RENAME_NOREPLACE (1 << 0)
#endif
#ifndef RENAME_EXCHANGE
#define RENAME_EXCHANGE (1 << 1)
#endif
#ifndef RENAME_WHITEOUT
#define RENAME_WHITEOUT (1 << 2)
#endif
#ifndef SYS_faccessat2
#define SYS_faccessat2 439
#endif
#ifndef SYS_openat2
#define SYS_openat2 437
#endif

namespace {

constexpr size_t kNameMax = 255;   // NAME_MAX: one path component
constexpr size_t kPathMax = 4095;  // PATH_MAX - 1: symlink targets
constexpr uint32_t kIovMax = 1024; // IOV_MAX
constexpr size_t kMaxRecvFds = 253; // SCM_MAX_FD

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
  Napi::Value ListenUnix(const Napi::CallbackInfo& info);
  Napi::Value AcceptUnix(const Napi::CallbackInfo& info);
  Napi::Value ConnectUnix(const Napi::CallbackInfo& info);
  Napi::Value IsListeningUnixStream(const Napi::CallbackInfo& info);
  Napi::Value RecvMsg(const Napi::CallbackInfo& info);
  Napi::Value SendMsg(const Napi::CallbackInfo& info);
  Napi::Value WatchFd(const Napi::CallbackInfo& info);
  Napi::Value MemoryAddress(const Napi::CallbackInfo& info);
  Napi::Value MapFixed(const Napi::CallbackInfo& info);
  Napi::Value UnmapFixed(const Napi::CallbackInfo& info);
  Napi::Value MemfdCreate(const Napi::CallbackInfo& info);
  Napi::Value Eventfd(const Napi::CallbackInfo& info);
  Napi::Value EventfdWrite(const Napi::CallbackInfo& info);
  Napi::Value EventfdRead(const Napi::CallbackInfo& info);
  Napi::Value Poll(const Napi::CallbackInfo& info);
  Napi::Value Close(const Napi::CallbackInfo& info);
  Napi::Value FcntlGetFl(const Napi::CallbackInfo& info);
  Napi::Value Openat2(const Napi::CallbackInfo& info);
  Napi::Value OpenProcFd(const Napi::CallbackInfo& info);
  Napi::Value StatAt(const Napi::CallbackInfo& info);
  Napi::Value Mkdirat(const Napi::CallbackInfo& info);
  Napi::Value Mknodat(const Napi::CallbackInfo& info);
  Napi::Value Unlinkat(const Napi::CallbackInfo& info);
  Napi::Value Renameat2(const Napi::CallbackInfo& info);
  Napi::Value Linkat(const Napi::CallbackInfo& info);
  Napi::Value Symlinkat(const Napi::CallbackInfo& info);
  Napi::Value Readlinkat(const Napi::CallbackInfo& info);
  Napi::Value Fchmodat(const Napi::CallbackInfo& info);
  Napi::Value Fchownat(const Napi::CallbackInfo& info);
  Napi::Value Utimensat(const Napi::CallbackInfo& info);
  Napi::Value Ftruncate(const Napi::CallbackInfo& info);
  Napi::Value Fallocate(const Napi::CallbackInfo& info);
  Napi::Value CopyFileRange(const Napi::CallbackInfo& info);
  Napi::Value Fsync(const Napi::CallbackInfo& info);
  Napi::Value Syncfs(const Napi::CallbackInfo& info);
  Napi::Value Fstatfs(const Napi::CallbackInfo& info);
  Napi::Value Getdents64(const Napi::CallbackInfo& info);
  Napi::Value Lseek(const Napi::CallbackInfo& info);
  Napi::Value LseekBig(const Napi::CallbackInfo& info);
  Napi::Value Faccessat(const Napi::CallbackInfo& info);
  Napi::Value Dup(const Napi::CallbackInfo& info);
  Napi::Value Fgetxattr(const Napi::CallbackInfo& info);
  Napi::Value Fsetxattr(const Napi::CallbackInfo& info);
  Napi::Value Flistxattr(const Napi::CallbackInfo& info);
  Napi::Value Fremovexattr(const Napi::CallbackInfo& info);
  Napi::Value SealShrink(const Napi::CallbackInfo& info);
  Napi::Value EpollCreate(const Napi::CallbackInfo& info);
  Napi::Value EpollAdd(const Napi::CallbackInfo& info);
  Napi::Value EpollWait(const Napi::CallbackInfo& info);
  Napi::Value RaiseNofile(const Napi::CallbackInfo& info);
  Napi::Value Pread(const Napi::CallbackInfo& info);
  Napi::Value Pwrite(const Napi::CallbackInfo& info);
  Napi::Value SetWindow(const Napi::CallbackInfo& info);
  Napi::Value PreadvWin(const Napi::CallbackInfo& info);
  Napi::Value PwritevWin(const Napi::CallbackInfo& info);
  Napi::Value SetCreds(const Napi::CallbackInfo& info);
};

// ---------------------------------------------------------------------------------------------------
// Argument helpers. Each returns false after scheduling a TypeError; the caller then returns an empty
// Napi::Value (node-addon-api turns that into undefined with the pending exception).

bool typeError(const Napi::Env& env, const char* msg) {
  Napi::TypeError::New(env, msg).ThrowAsJavaScriptException();
  return false;
}

bool argI32(const Napi::CallbackInfo& info, size_t i, int32_t& out) {
  if (i >= info.Length() || !info[i].IsNumber()) return typeError(info.Env(), "expected a number argument");
  out = info[i].As<Napi::Number>().Int32Value();
  return true;
}

bool argU32(const Napi::CallbackInfo& info, size_t i, uint32_t& out) {
  if (i >= info.Length() || !info[i].IsNumber()) return typeError(info.Env(), "expected a number argument");
  out = info[i].As<Napi::Number>().Uint32Value();  // modular: -1 becomes 0xffffffff (chown "no change")
  return true;
}

bool argI64(const Napi::CallbackInfo& info, size_t i, int64_t& out) {
  if (i >= info.Length() || !info[i].IsNumber()) return typeError(info.Env(), "expected a number argument");
  out = info[i].As<Napi::Number>().Int64Value();
  return true;
}

// Non-negative offset/length (≤ 2^53).
bool argU64(const Napi::CallbackInfo& info, size_t i, uint64_t& out) {
  if (i >= info.Length() || !info[i].IsNumber()) return typeError(info.Env(), "expected a number argument");
  double d = info[i].As<Napi::Number>().DoubleValue();
  if (!(d >= 0) || d > 9007199254740992.0) return typeError(info.Env(), "expected a non-negative integer");
  out = static_cast<uint64_t>(d);
  return true;
}

bool argTyped(const Napi::CallbackInfo& info, size_t i, napi_typedarray_type want, uint8_t*& data,
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

bool argBytes(const Napi::CallbackInfo& info, size_t i, uint8_t*& data, size_t& len) {
  size_t elems;
  return argTyped(info, i, napi_uint8_array, data, len, elems);
}

bool argI32Array(const Napi::CallbackInfo& info, size_t i, int32_t*& data, size_t& n) {
  uint8_t* p;
  size_t bytes;
  if (!argTyped(info, i, napi_int32_array, p, bytes, n)) return false;
  data = reinterpret_cast<int32_t*>(p);
  return true;
}

// buf (Uint8Array) at index i, off at i+1, len at i+2; the slice must lie inside the view.
bool argSlice(const Napi::CallbackInfo& info, size_t i, uint8_t*& p, size_t& len) {
  uint8_t* data;
  size_t bytes;
  uint64_t off, l;
  if (!argBytes(info, i, data, bytes) || !argU64(info, i + 1, off) || !argU64(info, i + 2, l)) return false;
  if (off > bytes || l > bytes - off) return typeError(info.Env(), "slice outside the buffer");
  p = data + off;
  len = static_cast<size_t>(l);
  return true;
}

bool argString(const Napi::CallbackInfo& info, size_t i, std::string& out) {
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

bool argName(const Napi::CallbackInfo& info, size_t i, Name& n, size_t max, bool allowNull) {
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

inline Napi::Value num(const Napi::Env& env, double v) { return Napi::Number::New(env, v); }
inline Napi::Value res(const Napi::Env& env, long r) { return Napi::Number::New(env, r < 0 ? -errno : r); }

#define ARGS_OR_THROW(cond) \
  do {                      \
    if (!(cond)) return Napi::Value(); \
  } while (0)

#define NAME_OR_ERR(n) \
  do {                 \
    if ((n).err) return num(env, (n).err); \
  } while (0)

// Retry a syscall on EINTR (EINTR means retry: STYLE.md "Errors"); yields the result, errno intact.
#define NOINTR(expr)                         \
  ({                                         \
    long _r;                                 \
    do {                                     \
      _r = (long)(expr);                     \
    } while (_r < 0 && errno == EINTR);      \
    _r;                                      \
  })

void procFdPath(char* out, size_t size, int fd) { snprintf(out, size, "/proc/self/fd/%d", fd); }

// ---------------------------------------------------------------------------------------------------
// vhost-user socket

Napi::Value NativeAddon::ListenUnix(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  std::string path;
  int32_t backlog;
  ARGS_OR_THROW(argString(info, 0, path) && argI32(info, 1, backlog));
  struct sockaddr_un sa;
  memset(&sa, 0, sizeof sa);
  sa.sun_family = AF_UNIX;
  if (path.size() >= sizeof sa.sun_path) return num(env, -ENAMETOOLONG);
  memcpy(sa.sun_path, path.data(), path.size());
  int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) return num(env, -errno);
  if (bind(fd, reinterpret_cast<struct sockaddr*>(&sa), sizeof sa) < 0 || listen(fd, backlog) < 0) {
    int e = errno;
    close(fd);
    return num(env, -e);
  }
  return num(env, fd);
}

Napi::Value NativeAddon::AcceptUnix(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int32_t fd;
  ARGS_OR_THROW(argI32(info, 0, fd));
  return res(env, NOINTR(accept4(fd, nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC)));
}

Napi::Value NativeAddon::ConnectUnix(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  std::string path;
  ARGS_OR_THROW(argString(info, 0, path));
  struct sockaddr_un sa;
  memset(&sa, 0, sizeof sa);
  sa.sun_family = AF_UNIX;
  if (path.size() >= sizeof sa.sun_path) return num(env, -ENAMETOOLONG);
  memcpy(sa.sun_path, path.data(), path.size());
  // nonblock: a listener whose backlog is full answers EAGAIN at once instead of blocking us
  bool nonblock = info.Length() > 1 && info[1].ToBoolean().Value();
  // dgram: a datagram socket (syslog's /dev/log) instead of a stream
  bool dgram = info.Length() > 2 && info[2].ToBoolean().Value();
  int fd = socket(AF_UNIX, (dgram ? SOCK_DGRAM : SOCK_STREAM) | SOCK_CLOEXEC | (nonblock ? SOCK_NONBLOCK : 0), 0);
  if (fd < 0) return num(env, -errno);
  if (NOINTR(connect(fd, reinterpret_cast<struct sockaddr*>(&sa), sizeof sa)) < 0) {
    int e = errno;
    close(fd);
    return num(env, -e);
  }
  return num(env, fd);
}

// 1 if fd is a listening AF_UNIX stream socket, 0 if it is some other socket or file, -errno on error.
Napi::Value NativeAddon::IsListeningUnixStream(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int32_t fd;
  ARGS_OR_THROW(argI32(info, 0, fd));
  struct sockaddr_storage ss;
  socklen_t sl = sizeof ss;
  if (getsockname(fd, reinterpret_cast<struct sockaddr*>(&ss), &sl) < 0) return num(env, errno == ENOTSOCK ? 0 : -errno);
  if (ss.ss_family != AF_UNIX) return num(env, 0);
  int type = 0, acc = 0;
  socklen_t il = sizeof type;
  if (getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &il) < 0) return num(env, -errno);
  il = sizeof acc;
  if (getsockopt(fd, SOL_SOCKET, SO_ACCEPTCONN, &acc, &il) < 0) return num(env, -errno);
  return num(env, type == SOCK_STREAM && acc ? 1 : 0);
}

Napi::Value NativeAddon::RecvMsg(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int32_t fd;
  uint8_t* p;
  size_t len;
  int32_t* fds;
  size_t nfds;
  ARGS_OR_THROW(argI32(info, 0, fd) && argSlice(info, 1, p, len) && argI32Array(info, 4, fds, nfds));
  for (size_t i = 0; i < nfds; i++) fds[i] = -1;

  alignas(struct cmsghdr) char control[CMSG_SPACE(sizeof(int) * kMaxRecvFds)];
  struct iovec iov = {p, len};
  struct msghdr msg;
  memset(&msg, 0, sizeof msg);
  msg.msg_iov = &iov;
  msg.msg_iovlen = 1;
  msg.msg_control = control;
  msg.msg_controllen = sizeof control;
  long r = NOINTR(recvmsg(fd, &msg, MSG_CMSG_CLOEXEC));
  if (r < 0) return num(env, -errno);

  // Hand out as many fds as the caller has room for and close the surplus, so a frontend sending too many
  // fds cannot leak descriptors into this process. With MSG_CTRUNC the kernel already dropped the rest.
  size_t got = 0;
  for (struct cmsghdr* c = CMSG_FIRSTHDR(&msg); c != nullptr; c = CMSG_NXTHDR(&msg, c)) {
    if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS) continue;
    size_t n = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
    const unsigned char* d = CMSG_DATA(c);
    for (size_t k = 0; k < n; k++) {
      int rfd;
      memcpy(&rfd, d + k * sizeof(int), sizeof(int));
      if (got < nfds)
        fds[got++] = rfd;
      else
        close(rfd);
    }
  }
  return num(env, r);
}

Napi::Value NativeAddon::SendMsg(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int32_t fd;
  uint8_t* p;
  size_t len;
  int32_t* fds = nullptr;
  size_t nfds = 0;
  ARGS_OR_THROW(argI32(info, 0, fd) && argSlice(info, 1, p, len));
  if (info.Length() > 4 && !info[4].IsNull() && !info[4].IsUndefined()) {
    ARGS_OR_THROW(argI32Array(info, 4, fds, nfds));
  }
  if (nfds > kMaxRecvFds) return num(env, -EINVAL);

  alignas(struct cmsghdr) char control[CMSG_SPACE(sizeof(int) * kMaxRecvFds)];
  struct iovec iov = {p, len};
  struct msghdr msg;
  memset(&msg, 0, sizeof msg);
  msg.msg_iov = &iov;
  msg.msg_iovlen = 1;
  if (nfds > 0) {
    memset(control, 0, CMSG_SPACE(sizeof(int) * nfds));
    msg.msg_control = control;
    msg.msg_controllen = CMSG_SPACE(sizeof(int) * nfds);
    struct cmsghdr* c = CMSG_FIRSTHDR(&msg);
    c->cmsg_level = SOL_SOCKET;
    c->cmsg_type = SCM_RIGHTS;
    c->cmsg_len = CMSG_LEN(sizeof(int) * nfds);
    memcpy(CMSG_DATA(c), fds, sizeof(int) * nfds);
  }
  return res(env, NOINTR(sendmsg(fd, &msg, MSG_NOSIGNAL)));
}

// ---------------------------------------------------------------------------------------------------
// watchFd: a uv_poll_t on this env's loop. The handle is ref'd, so it keeps the loop alive while active.

void onWatcherClosed(uv_handle_t* h) { delete static_cast<Watcher*>(h->data); }

void onPoll(uv_poll_t* h, int status, int events) {
  Watcher* w = static_cast<Watcher*>(h->data);
  if (w->cb == nullptr) return;  // stopped
  int revents = 0;
  if (status < 0) revents |= 2;
  if (events & UV_READABLE) revents |= 1;
  if (events & UV_DISCONNECT) revents |= 2;
  if (revents == 0) return;

  napi_env env = w->env;
  napi_handle_scope scope;
  if (napi_open_handle_scope(env, &scope) != napi_ok) return;
  napi_value fn, recv, arg, result;
  // Copy what we need first: the callback may call stop(), which releases w->cb and w->actx (the Watcher
  // itself stays allocated until the close callback, which cannot run before we return).
  napi_async_context actx = w->actx;
  if (napi_get_reference_value(env, w->cb, &fn) == napi_ok && fn != nullptr &&
      napi_get_global(env, &recv) == napi_ok && napi_create_int32(env, revents, &arg) == napi_ok) {
    napi_status st = napi_make_callback(env, actx, recv, fn, 1, &arg, &result);
    if (st == napi_pending_exception) {
      napi_value err;
      if (napi_get_and_clear_last_exception(env, &err) == napi_ok) napi_fatal_exception(env, err);
    }
  }
  napi_close_handle_scope(env, scope);
}

void NativeAddon::StopWatcher(uint32_t id, bool releaseJs) {
  auto it = watchers.find(id);
  if (it == watchers.end()) return;
  Watcher* w = it->second;
  watchers.erase(it);
  uv_poll_stop(&w->handle);
  // Drop the JS callback now: a stopped watcher must not keep (or call) it.
  if (releaseJs) {
    if (w->cb) napi_delete_reference(w->env, w->cb);
    if (w->actx) napi_async_destroy(w->env, w->actx);
  }
  w->cb = nullptr;
  w->actx = nullptr;
  uv_close(reinterpret_cast<uv_handle_t*>(&w->handle), onWatcherClosed);
}

// Env teardown (worker exit): close every active handle, or the worker's loop could not be closed.
void NativeAddon::EnvCleanup(void* arg) {
  NativeAddon* a = static_cast<NativeAddon*>(arg);
  a->cleanupRegistered = false;
  std::vector<uint32_t> ids;
  for (auto& kv : a->watchers) ids.push_back(kv.first);
  for (uint32_t id : ids) a->StopWatcher(id, true);
  a->winRef.Reset();
  a->winBase = nullptr;
  a->winLen = 0;
}

Napi::Value stopWatcherJs(const Napi::CallbackInfo& info) {
  uint32_t id = static_cast<uint32_t>(reinterpret_cast<uintptr_t>(info.Data()));
  NativeAddon* a = info.Env().GetInstanceData<NativeAddon>();
  if (a != nullptr) a->StopWatcher(id, true);
  return info.Env().Undefined();
}

Napi::Value NativeAddon::WatchFd(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int32_t fd;
  ARGS_OR_THROW(argI32(info, 0, fd));
  if (info.Length() < 2 || !info[1].IsFunction()) {
    typeError(env, "expected a callback");
    return Napi::Value();
  }
  uv_loop_t* loop = nullptr;
  if (napi_get_uv_event_loop(env, &loop) != napi_ok || loop == nullptr) {
    typeError(env, "no event loop");
    return Napi::Value();
  }
  Watcher* w = new Watcher();
  int r = uv_poll_init(loop, &w->handle, fd);
  if (r < 0) {
    delete w;
    Napi::Error::New(env, uv_strerror(r)).ThrowAsJavaScriptException();
    return Napi::Value();
  }
  w->handle.data = w;
  w->env = env;
  w->addon = this;
  napi_create_reference(env, info[1], 1, &w->cb);
  napi_async_init(env, nullptr, Napi::String::New(env, "virtiofsd.watchFd"), &w->actx);
  w->id = nextWatcherId++;
  if (nextWatcherId == 0) nextWatcherId = 1;
  r = uv_poll_start(&w->handle, UV_READABLE | UV_DISCONNECT, onPoll);
  watchers[w->id] = w;
  if (r < 0) {
    StopWatcher(w->id, true);
    Napi::Error::New(env, uv_strerror(r)).ThrowAsJavaScriptException();
    return Napi::Value();
  }
  Napi::Object handle = Napi::Object::New(env);
  handle.Set("stop", Napi::Function::New(env, stopWatcherJs, "stop",
                                         reinterpret_cast<void*>(static_cast<uintptr_t>(w->id))));
  return handle;
}

// ---------------------------------------------------------------------------------------------------
// Memory. The JS wrapper (src/native.ts) passes a Uint8Array over the whole SharedArrayBuffer: Node 20's
// N-API has no SharedArrayBuffer accessor, but a typed array view over one is readable.

Napi::Value NativeAddon::MemoryAddress(const Napi::CallbackInfo& info) {
  uint8_t* p;
  size_t len;
  ARGS_OR_THROW(argBytes(info, 0, p, len));
  return Napi::BigInt::New(info.Env(), static_cast<uint64_t>(reinterpret_cast<uintptr_t>(p)));
}

bool checkMapRange(size_t bytes, uint64_t off, uint64_t len) {
  uint64_t page = static_cast<uint64_t>(sysconf(_SC_PAGESIZE));
  if (len == 0 || off % page != 0 || len % page != 0) return false;
  return off <= bytes && len <= bytes - off;
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

// ---------------------------------------------------------------------------------------------------
// eventfd / wait

Napi::Value NativeAddon::Eventfd(const Napi::CallbackInfo& info) {
  uint32_t init;
  ARGS_OR_THROW(argU32(info, 0, init));
  return res(info.Env(), eventfd(init, EFD_NONBLOCK | EFD_CLOEXEC));
}

Napi::Value NativeAddon::EventfdWrite(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int32_t fd;
  uint64_t v;
  ARGS_OR_THROW(argI32(info, 0, fd) && argU64(info, 1, v));
  long r = NOINTR(write(fd, &v, sizeof v));
  if (r < 0) return num(env, -errno);
  return num(env, r == sizeof v ? 0 : -EIO);
}

Napi::Value NativeAddon::EventfdRead(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int32_t fd;
  ARGS_OR_THROW(argI32(info, 0, fd));
  uint64_t v = 0;
  long r = NOINTR(read(fd, &v, sizeof v));
  if (r < 0) return num(env, -errno);
  if (r != sizeof v) return num(env, -EIO);
  return num(env, static_cast<double>(v));
}

Napi::Value NativeAddon::Poll(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int32_t* fds;
  size_t nfds;
  uint32_t n;
  int32_t timeout;
  int32_t* rev;
  size_t nrev;
  ARGS_OR_THROW(argI32Array(info, 0, fds, nfds) && argU32(info, 1, n) && argI32(info, 2, timeout) &&
                argI32Array(info, 3, rev, nrev));
  if (n > nfds || n > nrev) {
    typeError(env, "n exceeds the fds or revents array");
    return Napi::Value();
  }
  struct pollfd stackPfd[64];
  std::vector<struct pollfd> heapPfd;
  struct pollfd* pfd = stackPfd;
  if (n > 64) {
    heapPfd.resize(n);
    pfd = heapPfd.data();
  }
  for (uint32_t i = 0; i < n; i++) {
    pfd[i].fd = fds[i];
    pfd[i].events = POLLIN;
    pfd[i].revents = 0;
  }
  // Not retried on EINTR: the caller (a worker loop) re-checks its state and polls again.
  int r = poll(pfd, n, timeout);
  if (r < 0) return num(env, -errno);
  for (uint32_t i = 0; i < n; i++) rev[i] = pfd[i].revents;
  return num(env, r);
}

// Queue workers wait on the kick eventfds through one epoll set each. EPOLLEXCLUSIVE (Linux 4.5) makes
// a kick wake one idle worker instead of all of them (a thundering herd that, on a small host, steals
// CPU from the guest's vCPUs).
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

Napi::Value NativeAddon::EpollCreate(const Napi::CallbackInfo& info) {
  return res(info.Env(), epoll_create1(EPOLL_CLOEXEC));
}

Napi::Value NativeAddon::EpollAdd(const Napi::CallbackInfo& info) {
  int32_t epfd, fd;
  ARGS_OR_THROW(argI32(info, 0, epfd) && argI32(info, 1, fd));
  bool exclusive = info.Length() > 2 && info[2].ToBoolean().Value();
  struct epoll_event ev;
  memset(&ev, 0, sizeof ev);
  ev.events = EPOLLIN | (exclusive ? EPOLLEXCLUSIVE : 0);
  ev.data.fd = fd;
  return res(info.Env(), epoll_ctl(epfd, EPOLL_CTL_ADD, fd, &ev));
}

// Blocks the calling thread (a worker). Ready fds go to out[0..n); -EINTR is returned, not retried.
Napi::Value NativeAddon::EpollWait(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int32_t epfd, timeout;
  int32_t* out;
  size_t nout;
  ARGS_OR_THROW(argI32(info, 0, epfd) && argI32Array(info, 1, out, nout) && argI32(info, 2, timeout));
  struct epoll_event evs[64];
  int max = nout < 64 ? static_cast<int>(nout) : 64;
  if (max <= 0) {
    typeError(env, "empty output array");
    return Napi::Value();
  }
  int r = epoll_wait(epfd, evs, max, timeout);
  if (r < 0) return num(env, -errno);
  for (int i = 0; i < r; i++) out[i] = evs[i].data.fd;
  return num(env, r);
}

Napi::Value NativeAddon::Close(const Napi::CallbackInfo& info) {
  int32_t fd;
  ARGS_OR_THROW(argI32(info, 0, fd));
  // Never retry close on EINTR: on Linux the fd is gone either way.
  return res(info.Env(), close(fd));
}

Napi::Value NativeAddon::FcntlGetFl(const Napi::CallbackInfo& info) {
  int32_t fd;
  ARGS_OR_THROW(argI32(info, 0, fd));
  return res(info.Env(), fcntl(fd, F_GETFL));
}

// ---------------------------------------------------------------------------------------------------
// File system

Napi::Value NativeAddon::Openat2(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int32_t dirfd;
  Name name;
  uint32_t flags, mode;
  uint64_t resolve;
  ARGS_OR_THROW(argI32(info, 0, dirfd) && argName(info, 1, name, kNameMax, false) && argU32(info, 2, flags) &&
                argU32(info, 3, mode) && argU64(info, 4, resolve));
  NAME_OR_ERR(name);
  struct open_how how;
  memset(&how, 0, sizeof how);
  how.flags = static_cast<uint64_t>(flags | O_CLOEXEC);
  // openat2 rejects a mode without O_CREAT/O_TMPFILE (EINVAL), unlike openat, which ignores it.
  how.mode = (flags & O_CREAT) || (flags & __O_TMPFILE) == __O_TMPFILE ? (mode & 07777) : 0;
  how.resolve = resolve;
  return res(env, NOINTR(syscall(SYS_openat2, dirfd, name.buf, &how, sizeof how)));
}

Napi::Value NativeAddon::OpenProcFd(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int32_t dir, fd;
  uint32_t flags;
  ARGS_OR_THROW(argI32(info, 0, dir) && argI32(info, 1, fd) && argU32(info, 2, flags));
  char buf[16];
  snprintf(buf, sizeof buf, "%d", fd);
  // /proc/self/fd/N is a magic link: it must be followed, so O_NOFOLLOW (which would give ELOOP) and
  // O_CREAT (meaningless on an existing inode) are dropped.
  flags &= ~static_cast<uint32_t>(O_NOFOLLOW | O_CREAT | O_EXCL);
  return res(env, NOINTR(openat(dir, buf, static_cast<int>(flags | O_CLOEXEC))));
}

inline void put64(uint8_t* out, size_t off, uint64_t v) { memcpy(out + off, &v, 8); }
inline void put32(uint8_t* out, size_t off, uint32_t v) { memcpy(out + off, &v, 4); }

// FUSE's rdev is the kernel's new_encode_dev (the guest decodes it with new_decode_dev).
uint32_t encodeDev(dev_t d) {
  uint32_t maj = major(d), min = minor(d);
  return (min & 0xff) | (maj << 8) | ((min & ~0xffu) << 12);
}

Napi::Value NativeAddon::StatAt(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int32_t dirfd, flags;
  Name name;
  uint8_t* out;
  size_t outLen;
  ARGS_OR_THROW(argI32(info, 0, dirfd) && argName(info, 1, name, kNameMax, true) && argI32(info, 2, flags) &&
                argBytes(info, 3, out, outLen));
  NAME_OR_ERR(name);
  if (outLen < 96) {
    typeError(env, "statAt out buffer must hold 96 bytes");
    return Napi::Value();
  }
  if (name.isNull) flags |= AT_EMPTY_PATH;
  struct stat st;
  if (fstatat(dirfd, name.buf, &st, flags) < 0) return num(env, -errno);
  // struct fuse_attr (linux/fuse.h), then u64 st_dev.
  put64(out, 0, st.st_ino);
  put64(out, 8, static_cast<uint64_t>(st.st_size));
  put64(out, 16, static_cast<uint64_t>(st.st_blocks));
  put64(out, 24, static_cast<uint64_t>(st.st_atim.tv_sec));
  put64(out, 32, static_cast<uint64_t>(st.st_mtim.tv_sec));
  put64(out, 40, static_cast<uint64_t>(st.st_ctim.tv_sec));
  put32(out, 48, static_cast<uint32_t>(st.st_atim.tv_nsec));
  put32(out, 52, static_cast<uint32_t>(st.st_mtim.tv_nsec));
  put32(out, 56, static_cast<uint32_t>(st.st_ctim.tv_nsec));
  put32(out, 60, st.st_mode);
  put32(out, 64, static_cast<uint32_t>(st.st_nlink));
  put32(out, 68, st.st_uid);
  put32(out, 72, st.st_gid);
  put32(out, 76, encodeDev(st.st_rdev));
  put32(out, 80, static_cast<uint32_t>(st.st_blksize));
  put32(out, 84, 0);
  put64(out, 88, static_cast<uint64_t>(st.st_dev));
  return num(env, 0);
}

Napi::Value NativeAddon::Mkdirat(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int32_t dirfd;
  Name name;
  uint32_t mode;
  ARGS_OR_THROW(argI32(info, 0, dirfd) && argName(info, 1, name, kNameMax, false) && argU32(info, 2, mode));
  NAME_OR_ERR(name);
  return res(env, mkdirat(dirfd, name.buf, mode));
}

Napi::Value NativeAddon::Mknodat(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int32_t dirfd;
  Name name;
  uint32_t mode, rdev;
  ARGS_OR_THROW(argI32(info, 0, dirfd) && argName(info, 1, name, kNameMax, false) && argU32(info, 2, mode) &&
                argU32(info, 3, rdev));
  NAME_OR_ERR(name);
  // rdev arrives new_encode_dev'd from FUSE; decode it into glibc's dev_t.
  dev_t d = makedev((rdev & 0xfff00) >> 8, (rdev & 0xff) | ((rdev >> 12) & 0xfff00));
  return res(env, mknodat(dirfd, name.buf, mode, d));
}

Napi::Value NativeAddon::Unlinkat(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int32_t dirfd, flags;
  Name name;
  ARGS_OR_THROW(argI32(info, 0, dirfd) && argName(info, 1, name, kNameMax, false) && argI32(info, 2, flags));
  NAME_OR_ERR(name);
  return res(env, unlinkat(dirfd, name.buf, flags));
}

Napi::Value NativeAddon::Renameat2(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int32_t od, nd;
  uint32_t flags;
  Name on, nn;
  ARGS_OR_THROW(argI32(info, 0, od) && argName(info, 1, on, kNameMax, false) && argI32(info, 2, nd) &&
                argName(info, 3, nn, kNameMax, false) && argU32(info, 4, flags));
  NAME_OR_ERR(on);
  NAME_OR_ERR(nn);
  return res(env, syscall(SYS_renameat2, od, on.buf, nd, nn.buf, flags));
}

Napi::Value NativeAddon::Linkat(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int32_t od, nd, flags;
  Name on, nn;
  ARGS_OR_THROW(argI32(info, 0, od) && argName(info, 1, on, kNameMax, true) && argI32(info, 2, nd) &&
                argName(info, 3, nn, kNameMax, false) && argI32(info, 4, flags));
  NAME_OR_ERR(on);
  NAME_OR_ERR(nn);
  if (!on.isNull) return res(env, linkat(od, on.buf, nd, nn.buf, flags));
  // AT_EMPTY_PATH needs CAP_DAC_READ_SEARCH (ENOENT without it); /proc/self/fd/N with AT_SYMLINK_FOLLOW
  // links the same inode without it.
  if (linkat(od, "", nd, nn.buf, flags | AT_EMPTY_PATH) == 0) return num(env, 0);
  if (errno != ENOENT) return num(env, -errno);
  char path[48];
  procFdPath(path, sizeof path, od);
  return res(env, linkat(AT_FDCWD, path, nd, nn.buf, AT_SYMLINK_FOLLOW));
}

Napi::Value NativeAddon::Symlinkat(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Name target, name;
  int32_t dirfd;
  ARGS_OR_THROW(argName(info, 0, target, kPathMax, false) && argI32(info, 1, dirfd) &&
                argName(info, 2, name, kNameMax, false));
  NAME_OR_ERR(target);
  NAME_OR_ERR(name);
  return res(env, symlinkat(target.buf, dirfd, name.buf));
}

Napi::Value NativeAddon::Readlinkat(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int32_t dirfd;
  Name name;
  uint8_t* out;
  size_t outLen;
  ARGS_OR_THROW(argI32(info, 0, dirfd) && argName(info, 1, name, kNameMax, true) && argBytes(info, 2, out, outLen));
  NAME_OR_ERR(name);
  // name null: readlinkat(fd, "") reads the symlink an O_PATH|O_NOFOLLOW fd refers to.
  return res(env, readlinkat(dirfd, name.buf, reinterpret_cast<char*>(out), outLen));
}

Napi::Value NativeAddon::Fchmodat(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int32_t dirfd;
  Name name;
  uint32_t mode;
  ARGS_OR_THROW(argI32(info, 0, dirfd) && argName(info, 1, name, kNameMax, true) && argU32(info, 2, mode));
  NAME_OR_ERR(name);
  if (name.isNull) {
    // fchmodat has no AT_EMPTY_PATH (before fchmodat2, Linux 6.6), and fchmod fails on O_PATH fds.
    char path[48];
    procFdPath(path, sizeof path, dirfd);
    return res(env, fchmodat(AT_FDCWD, path, mode, 0));
  }
  return res(env, fchmodat(dirfd, name.buf, mode, 0));
}

Napi::Value NativeAddon::Fchownat(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int32_t dirfd, flags;
  Name name;
  uint32_t uid, gid;
  ARGS_OR_THROW(argI32(info, 0, dirfd) && argName(info, 1, name, kNameMax, true) && argU32(info, 2, uid) &&
                argU32(info, 3, gid) && argI32(info, 4, flags));
  NAME_OR_ERR(name);
  if (name.isNull) flags |= AT_EMPTY_PATH;
  return res(env, fchownat(dirfd, name.buf, uid, gid, flags));
}

Napi::Value NativeAddon::Utimensat(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int32_t dirfd, flags;
  Name name;
  int64_t as, an, ms, mn;
  ARGS_OR_THROW(argI32(info, 0, dirfd) && argName(info, 1, name, kNameMax, true) && argI64(info, 2, as) &&
                argI64(info, 3, an) && argI64(info, 4, ms) && argI64(info, 5, mn) && argI32(info, 6, flags));
  NAME_OR_ERR(name);
  struct timespec ts[2];
  ts[0].tv_sec = as;
  ts[0].tv_nsec = an;
  ts[1].tv_sec = ms;
  ts[1].tv_nsec = mn;
  if (name.isNull) {
    char path[48];
    procFdPath(path, sizeof path, dirfd);
    return res(env, utimensat(AT_FDCWD, path, ts, 0));
  }
  return res(env, utimensat(dirfd, name.buf, ts, flags));
}

Napi::Value NativeAddon::Ftruncate(const Napi::CallbackInfo& info) {
  int32_t fd;
  uint64_t len;
  ARGS_OR_THROW(argI32(info, 0, fd) && argU64(info, 1, len));
  return res(info.Env(), NOINTR(ftruncate(fd, static_cast<off_t>(len))));
}

Napi::Value NativeAddon::Fallocate(const Napi::CallbackInfo& info) {
  int32_t fd, mode;
  uint64_t off, len;
  ARGS_OR_THROW(argI32(info, 0, fd) && argI32(info, 1, mode) && argU64(info, 2, off) && argU64(info, 3, len));
  return res(info.Env(), NOINTR(fallocate(fd, mode, static_cast<off_t>(off), static_cast<off_t>(len))));
}

// copy_file_range(2) with explicit offsets (the fds' own positions are untouched). Bytes or -errno.
Napi::Value NativeAddon::CopyFileRange(const Napi::CallbackInfo& info) {
  int32_t fdIn, fdOut, flags;
  uint64_t offIn, offOut, len;
  ARGS_OR_THROW(argI32(info, 0, fdIn) && argU64(info, 1, offIn) && argI32(info, 2, fdOut) && argU64(info, 3, offOut) &&
                argU64(info, 4, len) && argI32(info, 5, flags));
  loff_t in = static_cast<loff_t>(offIn), out = static_cast<loff_t>(offOut);
  ssize_t n;
  do {
    n = copy_file_range(fdIn, &in, fdOut, &out, static_cast<size_t>(len), static_cast<unsigned>(flags));
  } while (n < 0 && errno == EINTR);
  return num(info.Env(), n < 0 ? -errno : static_cast<double>(n));
}

Napi::Value NativeAddon::Fsync(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int32_t fd;
  ARGS_OR_THROW(argI32(info, 0, fd));
  bool datasync = info.Length() > 1 && info[1].ToBoolean().Value();
  return res(env, NOINTR(datasync ? fdatasync(fd) : fsync(fd)));
}

// syncfs(2): commit the file system holding fd (not an O_PATH fd). 0 or -errno.
Napi::Value NativeAddon::Syncfs(const Napi::CallbackInfo& info) {
  int32_t fd;
  ARGS_OR_THROW(argI32(info, 0, fd));
  return res(info.Env(), NOINTR(syncfs(fd)));
}

Napi::Value NativeAddon::Fstatfs(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int32_t fd;
  uint8_t* out;
  size_t outLen;
  ARGS_OR_THROW(argI32(info, 0, fd) && argBytes(info, 1, out, outLen));
  if (outLen < 80) {
    typeError(env, "fstatfs out buffer must hold 80 bytes");
    return Napi::Value();
  }
  struct statfs s;
  if (NOINTR(fstatfs(fd, &s)) < 0) return num(env, -errno);
  // struct fuse_kstatfs (linux/fuse.h)
  memset(out, 0, 80);
  put64(out, 0, s.f_blocks);
  put64(out, 8, s.f_bfree);
  put64(out, 16, s.f_bavail);
  put64(out, 24, s.f_files);
  put64(out, 32, s.f_ffree);
  put32(out, 40, static_cast<uint32_t>(s.f_bsize));
  put32(out, 44, static_cast<uint32_t>(s.f_namelen));
  put32(out, 48, static_cast<uint32_t>(s.f_frsize ? s.f_frsize : s.f_bsize));
  return num(env, 0);
}

Napi::Value NativeAddon::Getdents64(const Napi::CallbackInfo& info) {
  int32_t fd;
  uint8_t* out;
  size_t outLen;
  ARGS_OR_THROW(argI32(info, 0, fd) && argBytes(info, 1, out, outLen));
  return res(info.Env(), NOINTR(syscall(SYS_getdents64, fd, out, outLen)));
}

Napi::Value NativeAddon::Lseek(const Napi::CallbackInfo& info) {
  int32_t fd, whence;
  int64_t off;
  ARGS_OR_THROW(argI32(info, 0, fd) && argI64(info, 1, off) && argI32(info, 2, whence));
  off_t r = lseek(fd, static_cast<off_t>(off), whence);
  if (r < 0) return num(info.Env(), -errno);
  return num(info.Env(), static_cast<double>(r));
}

// Directory offsets (ext4 hashes) use all 63 bits: a JS number cannot hold them, so this variant takes
// and returns a BigInt (negative = -errno).
Napi::Value NativeAddon::LseekBig(const Napi::CallbackInfo& info) {
  int32_t fd, whence;
  ARGS_OR_THROW(argI32(info, 0, fd));
  if (info.Length() < 3 || !info[1].IsBigInt() || !info[2].IsNumber()) {
    Napi::TypeError::New(info.Env(), "expected (fd, bigint, whence)").ThrowAsJavaScriptException();
    return info.Env().Undefined();
  }
  bool lossless = false;
  int64_t off = info[1].As<Napi::BigInt>().Int64Value(&lossless);
  whence = info[2].As<Napi::Number>().Int32Value();
  if (!lossless) return Napi::BigInt::New(info.Env(), static_cast<int64_t>(-EINVAL));
  off_t r = lseek(fd, static_cast<off_t>(off), whence);
  if (r < 0) return Napi::BigInt::New(info.Env(), static_cast<int64_t>(-errno));
  return Napi::BigInt::New(info.Env(), static_cast<int64_t>(r));
}

Napi::Value NativeAddon::Faccessat(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int32_t dirfd, mode, flags;
  Name name;
  ARGS_OR_THROW(argI32(info, 0, dirfd) && argName(info, 1, name, kNameMax, true) && argI32(info, 2, mode) &&
                argI32(info, 3, flags));
  NAME_OR_ERR(name);
  if (name.isNull) flags |= AT_EMPTY_PATH;
  // The raw faccessat2 (Linux 5.8): honours flags exactly instead of glibc's emulation.
  return res(env, syscall(SYS_faccessat2, dirfd, name.buf, mode, flags));
}

Napi::Value NativeAddon::Dup(const Napi::CallbackInfo& info) {
  int32_t fd;
  ARGS_OR_THROW(argI32(info, 0, fd));
  return res(info.Env(), fcntl(fd, F_DUPFD_CLOEXEC, 0));
}

// ---------------------------------------------------------------------------------------------------
// Extended attributes, on a real (not O_PATH) fd: the caller reopens the inode through /proc/self/fd.

// An xattr name: 1..255 bytes (XATTR_NAME_MAX) without NUL. Empty or longer is -ERANGE, as the xattr
// syscalls answer (not -ENAMETOOLONG); an embedded NUL is -EINVAL like every other name here.
bool argXattrName(const Napi::CallbackInfo& info, size_t i, Name& n) {
  if (!argName(info, i, n, kNameMax, false)) return false;
  if (n.err == -ENAMETOOLONG || (n.err == 0 && n.buf[0] == 0)) n.err = -ERANGE;
  return true;
}

// An output buffer, or null/undefined/empty for "the size only" (the syscall's size 0).
bool argOutOrNull(const Napi::CallbackInfo& info, size_t i, uint8_t*& data, size_t& len) {
  if (i < info.Length() && (info[i].IsNull() || info[i].IsUndefined())) {
    data = nullptr;
    len = 0;
    return true;
  }
  if (!argBytes(info, i, data, len)) return false;
  if (len == 0) data = nullptr;
  return true;
}

Napi::Value NativeAddon::Fgetxattr(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int32_t fd;
  Name name;
  uint8_t* out;
  size_t outLen;
  ARGS_OR_THROW(argI32(info, 0, fd) && argXattrName(info, 1, name) && argOutOrNull(info, 2, out, outLen));
  NAME_OR_ERR(name);
  return res(env, NOINTR(fgetxattr(fd, name.buf, out, outLen)));
}

Napi::Value NativeAddon::Fsetxattr(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int32_t fd, flags;
  Name name;
  uint8_t* value;
  size_t valueLen;
  ARGS_OR_THROW(argI32(info, 0, fd) && argXattrName(info, 1, name) && argBytes(info, 2, value, valueLen) &&
                argI32(info, 3, flags));
  NAME_OR_ERR(name);
  return res(env, NOINTR(fsetxattr(fd, name.buf, valueLen ? value : nullptr, valueLen, flags)));
}

Napi::Value NativeAddon::Flistxattr(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int32_t fd;
  uint8_t* out;
  size_t outLen;
  ARGS_OR_THROW(argI32(info, 0, fd) && argOutOrNull(info, 1, out, outLen));
  return res(env, NOINTR(flistxattr(fd, reinterpret_cast<char*>(out), outLen)));
}

Napi::Value NativeAddon::Fremovexattr(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int32_t fd;
  Name name;
  ARGS_OR_THROW(argI32(info, 0, fd) && argXattrName(info, 1, name));
  NAME_OR_ERR(name);
  return res(env, NOINTR(fremovexattr(fd, name.buf)));
}

// Every inode the guest looks up holds an O_PATH fd: raise RLIMIT_NOFILE's soft limit to `want`
// (raising the hard limit too where we may, up to fs.nr_open). Returns the soft limit now in force.
Napi::Value NativeAddon::RaiseNofile(const Napi::CallbackInfo& info) {
  uint64_t want;
  ARGS_OR_THROW(argU64(info, 0, want));
  struct rlimit rl;
  if (getrlimit(RLIMIT_NOFILE, &rl) != 0) return num(info.Env(), -errno);
  rlim_t target = want > 0 ? static_cast<rlim_t>(want) : rl.rlim_max;
  if (target > rl.rlim_max) {
    struct rlimit up = {target, target};
    if (setrlimit(RLIMIT_NOFILE, &up) == 0) return num(info.Env(), static_cast<double>(target));
    target = rl.rlim_max;  // not allowed (no CAP_SYS_RESOURCE, or above fs.nr_open): take what we may
  }
  if (target > rl.rlim_cur) {
    struct rlimit up = {target, rl.rlim_max};
    if (setrlimit(RLIMIT_NOFILE, &up) != 0) return num(info.Env(), -errno);
    rl.rlim_cur = target;
  }
  return num(info.Env(), static_cast<double>(rl.rlim_cur));
}

Napi::Value NativeAddon::Pread(const Napi::CallbackInfo& info) {
  int32_t fd;
  uint8_t* p;
  size_t len;
  uint64_t pos;
  ARGS_OR_THROW(argI32(info, 0, fd) && argSlice(info, 1, p, len) && argU64(info, 4, pos));
  return res(info.Env(), NOINTR(pread(fd, p, len, static_cast<off_t>(pos))));
}

Napi::Value NativeAddon::Pwrite(const Napi::CallbackInfo& info) {
  int32_t fd;
  uint8_t* p;
  size_t len;
  uint64_t pos;
  ARGS_OR_THROW(argI32(info, 0, fd) && argSlice(info, 1, p, len) && argU64(info, 4, pos));
  return res(info.Env(), NOINTR(pwrite(fd, p, len, static_cast<off_t>(pos))));
}

// ---------------------------------------------------------------------------------------------------
// Zero copy against the shared linear memory.

Napi::Value NativeAddon::SetWindow(const Napi::CallbackInfo& info) {
  uint8_t* p;
  size_t len;
  ARGS_OR_THROW(argBytes(info, 0, p, len));
  winRef.Reset(info[0], 1);
  winBase = p;
  winLen = len;
  return info.Env().Undefined();
}

// Runs preadv/pwritev over a segment list {u32 win, u32 len} at `list` in the window. Every entry (and the
// list itself) is checked against the window before any I/O. Loops over IOV_MAX-sized batches and short
// transfers; after partial progress an error returns the bytes done so far.
template <bool kWrite>
long vecIo(NativeAddon* a, int fd, uint64_t list, uint64_t count, uint64_t pos) {
  if (a->winBase == nullptr) return -EFAULT;
  const uint64_t wl = a->winLen;
  if (count > wl / 8 || list > wl || count * 8 > wl - list) return -EFAULT;
  const uint8_t* l = a->winBase + list;
  auto seg = [l](uint64_t i, uint32_t& win, uint32_t& len) {
    memcpy(&win, l + i * 8, 4);
    memcpy(&len, l + i * 8 + 4, 4);
  };
  // The list is in shared memory: read each entry once, check it, and use only the checked copy.
  // Common chains are short: no heap allocation below kStackIov segments.
  constexpr size_t kStackIov = 64;
  struct iovec stackIov[kStackIov];
  std::vector<struct iovec> heapIov;
  struct iovec* all = stackIov;
  if (count > kStackIov) {
    heapIov.resize(static_cast<size_t>(count));
    all = heapIov.data();
  }
  size_t total = 0;
  for (uint64_t i = 0; i < count; i++) {
    uint32_t win, len;
    seg(i, win, len);
    if (static_cast<uint64_t>(win) > wl || static_cast<uint64_t>(len) > wl - win) return -EFAULT;
    if (len == 0) continue;
    all[total++] = {a->winBase + win, len};
  }
  long done = 0;
  size_t idx = 0;
  while (idx < total) {
    size_t n = total - idx;
    if (n > kIovMax) n = kIovMax;
    ssize_t r = kWrite ? pwritev(fd, &all[idx], static_cast<int>(n), static_cast<off_t>(pos))
                       : preadv(fd, &all[idx], static_cast<int>(n), static_cast<off_t>(pos));
    if (r < 0) {
      if (errno == EINTR) continue;
      return done > 0 ? done : -errno;
    }
    if (r == 0) break;
    done += r;
    pos += static_cast<uint64_t>(r);
    // Advance past fully transferred segments, trim a partially transferred one.
    size_t left = static_cast<size_t>(r);
    while (left > 0 && idx < total) {
      if (left >= all[idx].iov_len) {
        left -= all[idx].iov_len;
        idx++;
      } else {
        all[idx].iov_base = static_cast<uint8_t*>(all[idx].iov_base) + left;
        all[idx].iov_len -= left;
        left = 0;
      }
    }
  }
  return done;
}

Napi::Value NativeAddon::PreadvWin(const Napi::CallbackInfo& info) {
  int32_t fd;
  uint64_t list, count, pos;
  ARGS_OR_THROW(argI32(info, 0, fd) && argU64(info, 1, list) && argU64(info, 2, count) && argU64(info, 3, pos));
  return num(info.Env(), static_cast<double>(vecIo<false>(this, fd, list, count, pos)));
}

Napi::Value NativeAddon::PwritevWin(const Napi::CallbackInfo& info) {
  int32_t fd;
  uint64_t list, count, pos;
  ARGS_OR_THROW(argI32(info, 0, fd) && argU64(info, 1, list) && argU64(info, 2, count) && argU64(info, 3, pos));
  return num(info.Env(), static_cast<double>(vecIo<true>(this, fd, list, count, pos)));
}

Napi::Value NativeAddon::SetCreds(const Napi::CallbackInfo& info) {
  uint32_t uid, gid;
  ARGS_OR_THROW(argU32(info, 0, uid) && argU32(info, 1, gid));
  // Raw syscalls: per thread on Linux (glibc's set*id wrappers would broadcast to every thread).
  // gid first: after dropping fsuid we might lose the right to change fsgid.
  syscall(SYS_setfsgid, gid);
  syscall(SYS_setfsuid, uid);
  return num(info.Env(), 0);
}

// ---------------------------------------------------------------------------------------------------
// Constants

Napi::Object makeConstants(Napi::Env env) {
  Napi::Object c = Napi::Object::New(env);
#define C(name) c.Set(#name, Napi::Number::New(env, static_cast<double>(name)))
  C(O_RDONLY); C(O_WRONLY); C(O_RDWR); C(O_ACCMODE); C(O_CREAT); C(O_EXCL); C(O_NOCTTY); C(O_TRUNC);
  C(O_APPEND); C(O_NONBLOCK); C(O_DSYNC); C(O_SYNC); C(O_DIRECT); C(O_LARGEFILE); C(O_DIRECTORY);
  C(O_NOFOLLOW); C(O_NOATIME); C(O_CLOEXEC); C(O_PATH); C(O_TMPFILE); C(O_ASYNC); C(O_NDELAY);
  C(RESOLVE_NO_XDEV); C(RESOLVE_NO_MAGICLINKS); C(RESOLVE_NO_SYMLINKS); C(RESOLVE_BENEATH);
  C(RESOLVE_IN_ROOT); C(RESOLVE_CACHED);
  C(AT_FDCWD); C(AT_EMPTY_PATH); C(AT_SYMLINK_NOFOLLOW); C(AT_SYMLINK_FOLLOW); C(AT_REMOVEDIR);
  C(AT_EACCESS); C(AT_NO_AUTOMOUNT);
  C(RENAME_NOREPLACE); C(RENAME_EXCHANGE); C(RENAME_WHITEOUT);
  C(UTIME_NOW); C(UTIME_OMIT);
  C(S_IFMT); C(S_IFSOCK); C(S_IFLNK); C(S_IFREG); C(S_IFBLK); C(S_IFDIR); C(S_IFCHR); C(S_IFIFO);
  C(S_ISUID); C(S_ISGID); C(S_ISVTX);
  C(SEEK_SET); C(SEEK_CUR); C(SEEK_END); C(SEEK_DATA); C(SEEK_HOLE);
  C(FALLOC_FL_KEEP_SIZE); C(FALLOC_FL_PUNCH_HOLE); C(FALLOC_FL_COLLAPSE_RANGE); C(FALLOC_FL_ZERO_RANGE);
  C(FALLOC_FL_INSERT_RANGE); C(FALLOC_FL_UNSHARE_RANGE);
  C(F_OK); C(R_OK); C(W_OK); C(X_OK);
  C(POLLIN); C(POLLOUT); C(POLLERR); C(POLLHUP); C(POLLNVAL);
  C(NAME_MAX); C(PATH_MAX); C(IOV_MAX);
#undef C
  Napi::Object e = Napi::Object::New(env);
#define E(name) e.Set(#name, Napi::Number::New(env, name))
  E(EPERM); E(ENOENT); E(ESRCH); E(EINTR); E(EIO); E(ENXIO); E(E2BIG); E(ENOEXEC); E(EBADF); E(ECHILD);
  E(EAGAIN); E(EWOULDBLOCK); E(ENOMEM); E(EACCES); E(EFAULT); E(ENOTBLK); E(EBUSY); E(EEXIST); E(EXDEV);
  E(ENODEV); E(ENOTDIR); E(EISDIR); E(EINVAL); E(ENFILE); E(EMFILE); E(ENOTTY); E(ETXTBSY); E(EFBIG);
  E(ENOSPC); E(ESPIPE); E(EROFS); E(EMLINK); E(EPIPE); E(EDOM); E(ERANGE); E(EDEADLK); E(ENAMETOOLONG);
  E(ENOLCK); E(ENOSYS); E(ENOTEMPTY); E(ELOOP); E(ENOMSG); E(EIDRM); E(ENOSTR); E(ENODATA); E(ETIME);
  E(ENOSR); E(ENOLINK); E(EPROTO); E(EBADMSG); E(EOVERFLOW); E(EILSEQ); E(EUSERS); E(ENOTSOCK);
  E(EDESTADDRREQ); E(EMSGSIZE); E(EPROTOTYPE); E(ENOPROTOOPT); E(EPROTONOSUPPORT); E(EOPNOTSUPP);
  E(ENOTSUP); E(EAFNOSUPPORT); E(EADDRINUSE); E(EADDRNOTAVAIL); E(ENETDOWN); E(ENETUNREACH);
  E(ECONNABORTED); E(ECONNRESET); E(ENOBUFS); E(EISCONN); E(ENOTCONN); E(ETIMEDOUT); E(ECONNREFUSED);
  E(EHOSTUNREACH); E(EALREADY); E(EINPROGRESS); E(ESTALE); E(EDQUOT); E(ECANCELED); E(EOWNERDEAD);
  E(ENOTRECOVERABLE);
#undef E
  c.Set("errno", e);
  return c;
}

NativeAddon::NativeAddon(Napi::Env env, Napi::Object exports) {
  DefineAddon(exports, {
      InstanceMethod("listenUnix", &NativeAddon::ListenUnix, napi_enumerable),
      InstanceMethod("acceptUnix", &NativeAddon::AcceptUnix, napi_enumerable),
      InstanceMethod("connectUnix", &NativeAddon::ConnectUnix, napi_enumerable),
      InstanceMethod("isListeningUnixStream", &NativeAddon::IsListeningUnixStream, napi_enumerable),
      InstanceMethod("recvMsg", &NativeAddon::RecvMsg, napi_enumerable),
      InstanceMethod("sendMsg", &NativeAddon::SendMsg, napi_enumerable),
      InstanceMethod("watchFd", &NativeAddon::WatchFd, napi_enumerable),
      InstanceMethod("memoryAddress", &NativeAddon::MemoryAddress, napi_enumerable),
      InstanceMethod("mapFixed", &NativeAddon::MapFixed, napi_enumerable),
      InstanceMethod("unmapFixed", &NativeAddon::UnmapFixed, napi_enumerable),
      InstanceMethod("memfdCreate", &NativeAddon::MemfdCreate, napi_enumerable),
      InstanceMethod("eventfd", &NativeAddon::Eventfd, napi_enumerable),
      InstanceMethod("eventfdWrite", &NativeAddon::EventfdWrite, napi_enumerable),
      InstanceMethod("eventfdRead", &NativeAddon::EventfdRead, napi_enumerable),
      InstanceMethod("poll", &NativeAddon::Poll, napi_enumerable),
      InstanceMethod("close", &NativeAddon::Close, napi_enumerable),
      InstanceMethod("fcntlGetFl", &NativeAddon::FcntlGetFl, napi_enumerable),
      InstanceMethod("openat2", &NativeAddon::Openat2, napi_enumerable),
      InstanceMethod("openProcFd", &NativeAddon::OpenProcFd, napi_enumerable),
      InstanceMethod("statAt", &NativeAddon::StatAt, napi_enumerable),
      InstanceMethod("mkdirat", &NativeAddon::Mkdirat, napi_enumerable),
      InstanceMethod("mknodat", &NativeAddon::Mknodat, napi_enumerable),
      InstanceMethod("unlinkat", &NativeAddon::Unlinkat, napi_enumerable),
      InstanceMethod("renameat2", &NativeAddon::Renameat2, napi_enumerable),
      InstanceMethod("linkat", &NativeAddon::Linkat, napi_enumerable),
      InstanceMethod("symlinkat", &NativeAddon::Symlinkat, napi_enumerable),
      InstanceMethod("readlinkat", &NativeAddon::Readlinkat, napi_enumerable),
      InstanceMethod("fchmodat", &NativeAddon::Fchmodat, napi_enumerable),
      InstanceMethod("fchownat", &NativeAddon::Fchownat, napi_enumerable),
      InstanceMethod("utimensat", &NativeAddon::Utimensat, napi_enumerable),
      InstanceMethod("ftruncate", &NativeAddon::Ftruncate, napi_enumerable),
      InstanceMethod("fallocate", &NativeAddon::Fallocate, napi_enumerable),
      InstanceMethod("copyFileRange", &NativeAddon::CopyFileRange, napi_enumerable),
      InstanceMethod("fsync", &NativeAddon::Fsync, napi_enumerable),
      InstanceMethod("syncfs", &NativeAddon::Syncfs, napi_enumerable),
      InstanceMethod("fstatfs", &NativeAddon::Fstatfs, napi_enumerable),
      InstanceMethod("getdents64", &NativeAddon::Getdents64, napi_enumerable),
      InstanceMethod("lseek", &NativeAddon::Lseek, napi_enumerable),
      InstanceMethod("lseekBig", &NativeAddon::LseekBig, napi_enumerable),
      InstanceMethod("faccessat", &NativeAddon::Faccessat, napi_enumerable),
      InstanceMethod("dup", &NativeAddon::Dup, napi_enumerable),
      InstanceMethod("fgetxattr", &NativeAddon::Fgetxattr, napi_enumerable),
      InstanceMethod("fsetxattr", &NativeAddon::Fsetxattr, napi_enumerable),
      InstanceMethod("flistxattr", &NativeAddon::Flistxattr, napi_enumerable),
      InstanceMethod("fremovexattr", &NativeAddon::Fremovexattr, napi_enumerable),
      InstanceMethod("sealShrink", &NativeAddon::SealShrink, napi_enumerable),
      InstanceMethod("epollCreate", &NativeAddon::EpollCreate, napi_enumerable),
      InstanceMethod("epollAdd", &NativeAddon::EpollAdd, napi_enumerable),
      InstanceMethod("epollWait", &NativeAddon::EpollWait, napi_enumerable),
      InstanceMethod("raiseNofile", &NativeAddon::RaiseNofile, napi_enumerable),
      InstanceMethod("pread", &NativeAddon::Pread, napi_enumerable),
      InstanceMethod("pwrite", &NativeAddon::Pwrite, napi_enumerable),
      InstanceMethod("setWindow", &NativeAddon::SetWindow, napi_enumerable),
      InstanceMethod("preadvWin", &NativeAddon::PreadvWin, napi_enumerable),
      InstanceMethod("pwritevWin", &NativeAddon::PwritevWin, napi_enumerable),
      InstanceMethod("setCreds", &NativeAddon::SetCreds, napi_enumerable),
  });
  exports.Set("constants", makeConstants(env));
  rawEnv = env;
  if (napi_add_env_cleanup_hook(env, EnvCleanup, this) == napi_ok) cleanupRegistered = true;
}

NativeAddon::~NativeAddon() {
  // Instance data is finalized at env teardown; the cleanup hook normally ran already.
  if (cleanupRegistered) napi_remove_env_cleanup_hook(rawEnv, EnvCleanup, this);
  for (auto& kv : watchers) {
    Watcher* w = kv.second;
    uv_poll_stop(&w->handle);
    w->cb = nullptr;
    w->actx = nullptr;
    uv_close(reinterpret_cast<uv_handle_t*>(&w->handle), onWatcherClosed);
  }
  watchers.clear();
}

}  // namespace

NODE_API_ADDON(NativeAddon)
