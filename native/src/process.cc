// This process's fd limit (RLIMIT_NOFILE), the calling thread's file-system credentials, and an exit
// that does not wait for worker threads.

#include "addon.h"

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

Napi::Value NativeAddon::SetCreds(const Napi::CallbackInfo& info) {
  uint32_t uid, gid;
  ARGS_OR_THROW(args(info, uid, gid));
  // Raw syscalls: per thread on Linux (glibc's set*id wrappers would broadcast to every thread).
  // gid first: after dropping fsuid we might lose the right to change fsgid.
  syscall(SYS_setfsgid, gid);
  syscall(SYS_setfsuid, uid);
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
