// This process's fd limit (RLIMIT_NOFILE), the calling thread's file-system credentials, and an exit
// that does not wait for worker threads.

#include "addon.h"

#include <fcntl.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <unistd.h>

namespace virtiofsd {

// Every inode the guest looks up holds an O_PATH fd: raise RLIMIT_NOFILE's soft limit to `want`
// (raising the hard limit too where we may, up to fs.nr_open). Returns the soft limit now in force.
Napi::Value NativeAddon::RaiseNofile(const Napi::CallbackInfo& info) {
  uint64_t want;
  ARGS_OR_THROW(args(info, want));
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

// --rlimit-nofile=N as the reference daemon reads it: the soft limit becomes exactly `want` (lowered or
// raised; the hard limit is raised with it where we may). Returns the soft limit now in force or -errno.
Napi::Value NativeAddon::SetNofile(const Napi::CallbackInfo& info) {
  uint64_t want;
  ARGS_OR_THROW(args(info, want));
  struct rlimit rl;
  if (getrlimit(RLIMIT_NOFILE, &rl) != 0) return num(info.Env(), -errno);
  struct rlimit set = {static_cast<rlim_t>(want), rl.rlim_max > want ? rl.rlim_max : static_cast<rlim_t>(want)};
  if (setrlimit(RLIMIT_NOFILE, &set) != 0) return num(info.Env(), -errno);
  return num(info.Env(), static_cast<double>(want));
}

// The supplementary groups this thread has, as far as SetCreds knows: -1 until it first sets them (a
// thread starts with the list it inherited from the process). Credentials are per thread (the raw
// syscalls below act on the calling thread only), so this is thread_local, not per env.
static thread_local long tGroups = -1;

// In a user namespace whose setgroups is "deny" (rootless mode with the launcher's own single-id maps,
// docs/sandbox.md) setgroups always fails with EPERM: no thread can shed the groups it started with or
// take others. Read once, when the addon is loaded (before the sandbox moves the root away from /proc).
static const bool kSetgroupsDenied = [] {
  int fd = open("/proc/self/setgroups", O_RDONLY | O_CLOEXEC);
  if (fd < 0) return false;
  char buf[8] = {0};
  ssize_t n = read(fd, buf, sizeof(buf) - 1);
  close(fd);
  return n >= 4 && memcmp(buf, "deny", 4) == 0;
}();

// Most supplementary groups one call takes (the FUSE layer keeps far fewer: src/fuse/server.ts).
constexpr uint32_t kMaxGroups = 64;

// setCreds's third argument: a Uint32Array of gids, or null/undefined for none.
struct Gids {
  const uint32_t* data = nullptr;
  size_t len = 0;
};
static inline bool arg(const Napi::CallbackInfo& info, size_t& i, Gids& out) {
  if (i >= info.Length() || info[i].IsNull() || info[i].IsUndefined()) {
    i++;
    return true;
  }
  uint8_t* p = nullptr;
  size_t bytes;
  if (!typedAt(info, i++, napi_uint32_array, p, bytes, out.len)) return false;
  out.data = reinterpret_cast<const uint32_t*>(p);
  return true;
}

// setCreds(uid, gid, groups?, count?): this thread's fsuid, fsgid and supplementary groups (the first
// `count` of `groups`, all of them when count is absent; none when null or count is 0), for a request
// run as its caller; (0, 0) puts the daemon's own back (root, no supplementary groups). Returns 0, or
// -EPERM when the kernel kept an old id (the daemon lacks CAP_SETUID/CAP_SETGID, or an id is invalid,
// e.g. 2^32 - 1), or -errno from setgroups. After a failure the thread may be half switched: the
// caller switches back to (0, 0).
//
// Raw syscalls: credentials are per thread on Linux, and glibc's setgroups/set*id wrappers would
// broadcast the change to every thread of the process. setfsuid/setfsgid report no error, only the
// previous id, so each is checked by asking again with -1 (an invalid id: nothing changes, the current
// one comes back). No allocation: the list is read in place.
Napi::Value NativeAddon::SetCreds(const Napi::CallbackInfo& info) {
  uint32_t uid, gid, count;
  Gids groups;
  ARGS_OR_THROW(args(info, uid, gid, groups));
  // count: how many of `groups` count (default: all of them)
  size_t i = 3;
  if (i < info.Length() && !info[i].IsUndefined()) {
    ARGS_OR_THROW(arg(info, i, count));
  } else {
    count = static_cast<uint32_t>(groups.len > kMaxGroups ? kMaxGroups + 1 : groups.len);
  }
  if (count > groups.len || count > kMaxGroups) {
    Napi::TypeError::New(info.Env(), "setCreds: count beyond the groups given").ThrowAsJavaScriptException();
    return Napi::Value();
  }
  // Groups first. setgroups needs CAP_SETGID, which an fsuid other than 0 leaves in place (it drops
  // only the file-system capabilities). An empty list is set whenever the thread's may not be empty:
  // a caller never acts with the daemon's own supplementary groups (root's, say).
  // Where setgroups is denied an empty list is taken as it is (nothing else is possible); a caller's
  // groups then fail with EPERM.
  if (count > 0 || (tGroups != 0 && !kSetgroupsDenied)) {
    if (syscall(SYS_setgroups, static_cast<size_t>(count), count > 0 ? groups.data : nullptr) != 0) {
      int e = errno;
      return num(info.Env(), -e);
    }
    tGroups = count;
  }
  // gid before uid: the thread stays root until its groups and fsgid are in place.
  syscall(SYS_setfsgid, gid);
  if (static_cast<uint32_t>(syscall(SYS_setfsgid, -1)) != gid) return num(info.Env(), -EPERM);
  syscall(SYS_setfsuid, uid);
  if (static_cast<uint32_t>(syscall(SYS_setfsuid, -1)) != uid) return num(info.Env(), -EPERM);
  return num(info.Env(), 0);
}

// _exit(2): ends the process at once. process.exit() first stops and joins every worker thread, and a
// worker blocked in a system call (a read on a hung host file system) is never joined: the exit hangs.
// The caller writes its last log line first (log lines are written synchronously).
Napi::Value NativeAddon::ExitNow(const Napi::CallbackInfo& info) {
  int32_t code;
  ARGS_OR_THROW(args(info, code));
  _exit(code);
}

}  // namespace virtiofsd
