// Confinement (docs/sandbox.md): the launcher's clone into new namespaces, the waiting parent, the
// move into the shared directory (pivot_root or chroot), and the capability drop on every thread.
//
// Capabilities are per thread, and Node has started its threads (V8's platform workers, libuv's pool,
// our workers) before any of this runs. So the drop is broadcast: each thread takes a signal whose
// handler drops its own capabilities with raw system calls; the caller waits for each one, then reads
// every thread's status back until all agree. The signal is glibc's own set*id broadcast signal
// (SIGSETXID, 33), because it is the one signal no thread can block: glibc leaves it out of every mask
// (one of Node's threads blocks all the others). Its handler is borrowed for the broadcast, through the
// raw rt_sigaction glibc's sigaction refuses it to, and given back afterwards.

#include "addon.h"

#include <fcntl.h>
#include <linux/capability.h>
#include <sched.h>
#include <signal.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>

#include <atomic>
#include <vector>

namespace virtiofsd {

namespace {

// A failure with the step that failed, for the log line: {step, errno}.
Napi::Value failure(const Napi::Env& env, const char* step, int err) {
  Napi::Object o = Napi::Object::New(env);
  o.Set("step", Napi::String::New(env, step));
  o.Set("errno", Napi::Number::New(env, err));
  return o;
}

// Async-signal-safe: the launcher child may call nothing else before execve.
void writeAll(const char* s) {
  size_t n = strlen(s);
  while (n > 0) {
    ssize_t w = syscall(SYS_write, 2, s, n);
    if (w <= 0) return;
    s += w;
    n -= static_cast<size_t>(w);
  }
}

void writeErrno(int e) {
  char buf[12];
  buf[formatDecimal(buf, static_cast<uint32_t>(e))] = 0;
  writeAll(buf);
}

[[noreturn]] void childFail(const char* step) {
  int e = errno;
  writeAll("virtiofsd-ts: sandbox: ");
  writeAll(step);
  writeAll(" failed: errno ");
  writeErrno(e);
  writeAll("\n");
  syscall(SYS_exit_group, 126);
  __builtin_unreachable();
}

}  // namespace

// sandboxSpawn(execPath, argv[], env[], cloneFlags, mountProc, keepFds[], gate): a child in new namespaces
// (clone flags from JS: CLONE_NEWNS|NEWPID|NEWNET|NEWIPC, and CLONE_NEWUSER for rootless mode) that makes
// its mounts private to it, mounts a fresh /proc for its pid namespace, clears close-on-exec on keepFds,
// and execs execPath. Returns the child's pid or -errno (the clone's). The child dies with its parent
// (PR_SET_PDEATHSIG).
//
// The handshake, through a pipe: the parent writes the child's pid as it sees it ("1234\n"). With `gate`
// the child then waits for one more byte before it does anything else: the parent first writes the
// child's uid_map and gid_map (a new user namespace has none, and without them the child is nobody with
// no way to gain root in it), then writes 'G' (sandboxRelease). Anything else (the parent closes the
// pipe, or dies) and the child exits without exec. With gate the result is {pid, gate}: gate is the
// parent's end of the pipe (close-on-exec), for sandboxRelease or to close on failure.
//
// In a new user namespace the child, released, drops the supplementary groups if the namespace allows it
// (not when setgroups is "deny"), then becomes uid and gid 0 of the namespace (setresgid, setresuid: the
// maps may not put its own host ids at 0); the capabilities it has there since the clone survive the
// switch, and execve as uid 0 keeps them all (over its own namespaces only).
//
// The parent is multi-threaded, so between clone and execve the child makes raw system calls only:
// everything it needs is built before the clone.
Napi::Value NativeAddon::SandboxSpawn(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 7 || !info[0].IsString() || !info[1].IsArray() || !info[2].IsArray() || !info[3].IsNumber() ||
      !info[4].IsBoolean() || !info[5].IsArray() || !info[6].IsBoolean()) {
    Napi::TypeError::New(env, "sandboxSpawn(execPath, argv, env, flags, mountProc, keepFds, gate)").ThrowAsJavaScriptException();
    return Napi::Value();
  }
  std::vector<int> keep;
  Napi::Array keepA = info[5].As<Napi::Array>();
  for (uint32_t i = 0; i < keepA.Length(); i++) keep.push_back(keepA.Get(i).ToNumber().Int32Value());
  std::string path = info[0].As<Napi::String>().Utf8Value();
  auto strings = [](Napi::Array a, std::vector<std::string>& out) {
    for (uint32_t i = 0; i < a.Length(); i++) out.push_back(a.Get(i).ToString().Utf8Value());
  };
  std::vector<std::string> argvS, envS;
  strings(info[1].As<Napi::Array>(), argvS);
  strings(info[2].As<Napi::Array>(), envS);
  uint64_t flags = static_cast<uint64_t>(info[3].As<Napi::Number>().Int64Value());
  bool mountProc = info[4].As<Napi::Boolean>().Value();
  bool gate = info[6].As<Napi::Boolean>().Value();
  // In its pid namespace the child is pid 1: it learns its pid out there (for log lines and syslog
  // tags) from the parent, through a pipe, into an environment entry made room for in advance.
  static const char kHostPid[] = "VIRTIOFSD_TS_HOST_PID=";
  envS.push_back(std::string(kHostPid) + std::string(12, '\0'));
  std::vector<char*> argv, envp;
  for (auto& s : argvS) argv.push_back(s.data());
  argv.push_back(nullptr);
  for (auto& s : envS) envp.push_back(s.data());
  envp.push_back(nullptr);
  char* pidSlot = envS.back().data() + sizeof(kHostPid) - 1;
  int pfd[2];
  if (pipe2(pfd, O_CLOEXEC) != 0) return num(env, -errno);

  long pid = syscall(SYS_clone, flags | SIGCHLD, 0, 0, 0, 0);
  if (pid < 0) {
    int e = errno;
    close(pfd[0]);
    close(pfd[1]);
    return num(env, -e);
  }
  if (pid > 0) {
    close(pfd[0]);
    char digits[16];
    int n = snprintf(digits, sizeof(digits), "%ld\n", pid);
    if (write(pfd[1], digits, static_cast<size_t>(n)) != n) { /* the child goes without: its log says pid 1 */ }
    if (!gate) {
      close(pfd[1]);
      return num(env, static_cast<double>(pid));
    }
    Napi::Object o = Napi::Object::New(env);
    o.Set("pid", Napi::Number::New(env, static_cast<double>(pid)));
    o.Set("gate", Napi::Number::New(env, pfd[1]));
    return o;
  }

  // The child: raw system calls only.
  syscall(SYS_close, pfd[1]);
  auto readByte = [&](char& c) -> bool {
    for (;;) {
      long r = syscall(SYS_read, pfd[0], &c, 1);
      if (r == 1) return true;
      if (r == 0 || errno != EINTR) return false;
    }
  };
  char c;
  for (int got = 0; readByte(c) && c != '\n';)
    if (got < 11) pidSlot[got++] = c;
  if (gate) {
    if (!readByte(c) || c != 'G') {
      writeAll("virtiofsd-ts: sandbox: the launcher did not release the daemon (its user namespace is not set up); not starting\n");
      syscall(SYS_exit_group, 125);
    }
  }
  syscall(SYS_close, pfd[0]);
  if (flags & CLONE_NEWUSER) {
    // (EPERM: setgroups is "deny" in this namespace, and the groups cannot change at all)
    if (syscall(SYS_setgroups, 0, nullptr) != 0 && errno != EPERM) childFail("setgroups(0) in the user namespace");
    if (syscall(SYS_setresgid, 0, 0, 0) != 0) childFail("setresgid(0, 0, 0) in the user namespace (is gid 0 mapped?)");
    if (syscall(SYS_setresuid, 0, 0, 0) != 0) childFail("setresuid(0, 0, 0) in the user namespace (is uid 0 mapped?)");
  }
  // (after the id switch: a change of the effective ids clears the parent-death signal)
  if (syscall(SYS_prctl, PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0) != 0) childFail("prctl(PR_SET_PDEATHSIG)");
  // Node marks every inherited fd close-on-exec at startup (stdio included): the ones the daemon
  // serves with are inherited again.
  for (int fd : keep)
    if (syscall(SYS_fcntl, fd, F_SETFD, 0) != 0) childFail("fcntl(F_SETFD) on an inherited fd");
  sigset_t none;
  memset(&none, 0, sizeof(none));
  syscall(SYS_rt_sigprocmask, SIG_SETMASK, &none, nullptr, 8);
  if (flags & CLONE_NEWNS) {
    // Our mounts stay ours; the host's later mounts still reach us (a submount of the share appears).
    if (syscall(SYS_mount, nullptr, "/", nullptr, MS_REC | MS_SLAVE, nullptr) != 0) childFail("mount(/, MS_SLAVE)");
    if (mountProc &&
        syscall(SYS_mount, "proc", "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, nullptr) != 0)
      childFail("mount(proc)");
  }
  syscall(SYS_execve, path.c_str(), argv.data(), envp.data());
  childFail("execve");
}

namespace {

class WaitWorker : public Napi::AsyncWorker {
 public:
  WaitWorker(Napi::Env env, int pid) : Napi::AsyncWorker(env), pid_(pid), deferred_(Napi::Promise::Deferred::New(env)) {}
  Napi::Promise Promise() { return deferred_.Promise(); }
  void Execute() override {
    int r;
    do r = waitpid(pid_, &status_, __WALL);
    while (r < 0 && errno == EINTR);
    err_ = r < 0 ? errno : 0;
  }
  void OnOK() override {
    Napi::Env env = Env();
    Napi::Object o = Napi::Object::New(env);
    if (err_ != 0) {
      o.Set("errno", Napi::Number::New(env, err_));
    } else if (WIFSIGNALED(status_)) {
      o.Set("signal", Napi::Number::New(env, WTERMSIG(status_)));
    } else {
      o.Set("code", Napi::Number::New(env, WEXITSTATUS(status_)));
    }
    deferred_.Resolve(o);
  }

 private:
  int pid_;
  int status_ = 0;
  int err_ = 0;
  Napi::Promise::Deferred deferred_;
};

}  // namespace

// waitChild(pid): resolves with {code} or {signal} once the child has ended ({errno} if it cannot be
// waited for). Waits in libuv's pool: the event loop stays free to forward signals.
Napi::Value NativeAddon::WaitChild(const Napi::CallbackInfo& info) {
  int32_t pid;
  ARGS_OR_THROW(args(info, pid));
  auto* w = new WaitWorker(info.Env(), pid);
  Napi::Promise p = w->Promise();
  w->Queue();
  return p;
}

// enterRoot(dir, pivot, rootFd): make `dir` this process's root (rootFd, an O_PATH fd of dir, then names
// the new root). pivot (in a mount namespace of our own):
// bind dir onto itself, pivot_root into it and detach the old root, so nothing of the host's tree is
// reachable by path; otherwise chroot. Every thread shares the root (CLONE_FS), so all move at once.
// Returns 0 or {step, errno}.
Napi::Value NativeAddon::EnterRoot(const Napi::CallbackInfo& info) {
  std::string dir;
  Flag pivot;
  int32_t rootFd;
  ARGS_OR_THROW(args(info, dir, pivot, rootFd));
  Napi::Env env = info.Env();
  if (pivot.on) {
    if (mount(dir.c_str(), dir.c_str(), nullptr, MS_BIND | MS_REC, nullptr) != 0) return failure(env, "bind mount", errno);
    if (chdir(dir.c_str()) != 0) return failure(env, "chdir", errno);
    // pivot_root(".", "."): the old root ends up stacked on the new one, where umount2 detaches it.
    if (syscall(SYS_pivot_root, ".", ".") != 0) return failure(env, "pivot_root", errno);
    if (umount2(".", MNT_DETACH) != 0) return failure(env, "umount2(old root)", errno);
    // The share's fd opened before (node id 1) is in the old tree, now detached with every mount below
    // it: through it a mount inside the share would show its empty mount point. It becomes the new root
    // (the same directory, with its submounts) under the same fd number, which every table holds.
    if (rootFd >= 0) {
      int nfd = open("/", O_PATH | O_DIRECTORY | O_CLOEXEC);
      if (nfd < 0) return failure(env, "open(/)", errno);
      if (dup3(nfd, rootFd, O_CLOEXEC) < 0) {
        int e = errno;
        close(nfd);
        return failure(env, "dup3(root)", e);
      }
      close(nfd);
    }
  } else {
    if (chdir(dir.c_str()) != 0) return failure(env, "chdir", errno);
    if (chroot(".") != 0) return failure(env, "chroot", errno);
  }
  if (chdir("/") != 0) return failure(env, "chdir(/)", errno);
  return num(env, 0);
}

namespace {

// The capability plan for the broadcast: set before the first signal, read by the handler.
uint32_t gKeep[2];
int gLastCap;
std::atomic<int> gAnswered{0};
std::atomic<int> gErr{0};

// Async-signal-safe: this thread keeps only gKeep (bounding set, permitted, effective; no inheritable,
// no ambient) and can never gain privileges again (no_new_privs). The bounding set is dropped first:
// that needs CAP_SETPCAP, which capset may be about to drop.
int dropOwn() {
  if (syscall(SYS_prctl, PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0) return errno;
  for (int cap = 0; cap <= gLastCap; cap++) {
    if (gKeep[cap >> 5] & (1u << (cap & 31))) continue;
    // (one already gone is skipped: dropping needs CAP_SETPCAP, gone too after a first pass)
    if (syscall(SYS_prctl, PR_CAPBSET_READ, cap, 0, 0, 0) != 1) continue;
    if (syscall(SYS_prctl, PR_CAPBSET_DROP, cap, 0, 0, 0) != 0 && errno != EINVAL) return errno;
  }
  // (EINVAL: a kernel without ambient capabilities has none to clear)
  if (syscall(SYS_prctl, PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0) != 0 && errno != EINVAL) return errno;
  struct __user_cap_header_struct h = {_LINUX_CAPABILITY_VERSION_3, 0};
  struct __user_cap_data_struct d[2] = {{gKeep[0], gKeep[0], 0}, {gKeep[1], gKeep[1], 0}};
  if (syscall(SYS_capset, &h, d) != 0) return errno;
  return 0;
}

// The kernel's struct sigaction (rt_sigaction(2)); the same layout on x86_64 and aarch64.
struct KernelSigaction {
  void* handler;
  unsigned long flags;
  void* restorer;
  uint64_t mask;
};
constexpr int kSetxid = 33;     // glibc's SIGSETXID
constexpr int kDonor = 62;      // SIGRTMAX - 2: unused by Node; lends glibc's restorer (see DropCaps)

void onDropSignal(int) {
  int saved = errno;
  int e = dropOwn();
  if (e != 0) gErr.store(e);
  gAnswered.fetch_add(1);
  errno = saved;
}

// The thread ids in /proc/self/task (taskFd read from its start).
bool listTasks(int taskFd, std::vector<int>& out) {
  out.clear();
  if (lseek(taskFd, 0, SEEK_SET) != 0) return false;
  long r = forEachDirent(taskFd, [&out](const char* name) {
    if (name[0] >= '0' && name[0] <= '9') out.push_back(atoi(name));
  });
  if (r < 0) errno = static_cast<int>(-r);
  return r == 0;
}

// A thread's CapEff and CapBnd, from /proc/self/task/TID/status; false if it has gone.
bool taskCaps(int taskFd, int tid, uint64_t& eff, uint64_t& bnd, bool& nnp) {
  char path[32];
  snprintf(path, sizeof(path), "%d/status", tid);
  int fd = openat(taskFd, path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) return false;
  char buf[4096];
  ssize_t n = read(fd, buf, sizeof(buf) - 1);
  close(fd);
  if (n <= 0) return false;
  buf[n] = 0;
  const char* e = strstr(buf, "\nCapEff:\t");
  const char* b = strstr(buf, "\nCapBnd:\t");
  const char* p = strstr(buf, "\nNoNewPrivs:\t");
  if (!e || !b || !p) return false;
  eff = strtoull(e + 9, nullptr, 16);
  bnd = strtoull(b + 9, nullptr, 16);
  nnp = p[13] == '1';
  return true;
}

}  // namespace

// dropCaps(procSelfFdDir, keepLo, keepHi): every thread of the process keeps only the
// capabilities in keep (bits as in linux/capability.h) and gets no_new_privs. procSelfFdDir is an fd of
// /proc/self/fd (opened before the root moved): its parent's task directory lists the threads. The
// broadcast repeats until every thread reads back right (a thread started meanwhile by one not yet
// dropped inherits the old set). Returns 0 or {step, errno}.
Napi::Value NativeAddon::DropCaps(const Napi::CallbackInfo& info) {
  int32_t procFd;
  uint32_t keepLo, keepHi;
  ARGS_OR_THROW(args(info, procFd, keepLo, keepHi));
  const int sig = kSetxid;
  Napi::Env env = info.Env();
  gKeep[0] = keepLo;
  gKeep[1] = keepHi;
  gLastCap = 0;
  while (gLastCap < 63 && prctl(PR_CAPBSET_READ, gLastCap + 1, 0, 0, 0) >= 0) gLastCap++;
  const uint64_t want = (static_cast<uint64_t>(keepHi) << 32 | keepLo) & ((gLastCap >= 63) ? ~0ull : ((1ull << (gLastCap + 1)) - 1));
  int taskFd = openat(procFd, "../task", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (taskFd < 0) return failure(env, "open /proc/self/task", errno);
  // The handler goes in through glibc's sigaction on a spare signal (which fills in glibc's restorer,
  // required on x86_64), is read back as the kernel holds it, and is copied onto SIGSETXID raw.
  struct sigaction sa, donorOld;
  memset(&sa, 0, sizeof(sa));
  sa.sa_handler = onDropSignal;
  sa.sa_flags = SA_RESTART;
  sigfillset(&sa.sa_mask);
  KernelSigaction mine, old;
  if (sigaction(kDonor, &sa, &donorOld) != 0 || syscall(SYS_rt_sigaction, kDonor, nullptr, &mine, 8) != 0) {
    int e = errno;
    close(taskFd);
    return failure(env, "sigaction", e);
  }
  sigaction(kDonor, &donorOld, nullptr);
  if (syscall(SYS_rt_sigaction, sig, nullptr, &old, 8) != 0 || syscall(SYS_rt_sigaction, sig, &mine, nullptr, 8) != 0) {
    int e = errno;
    close(taskFd);
    return failure(env, "rt_sigaction(SIGSETXID)", e);
  }
  const int self = static_cast<int>(syscall(SYS_gettid));
  const int pid = getpid();
  const char* step = nullptr;
  int err = 0;
  std::vector<int> tids;
  gErr.store(0);
  for (int round = 0; round < 8 && step == nullptr; round++) {
    if (!listTasks(taskFd, tids)) {
      step = "read /proc/self/task";
      err = errno;
      break;
    }
    for (int tid : tids) {
      if (tid == self) continue;
      gAnswered.store(0);
      if (syscall(SYS_tgkill, pid, tid, sig) != 0) {
        if (errno == ESRCH) continue;  // it has ended
        step = "tgkill";
        err = errno;
        break;
      }
      // A thread answers within microseconds unless it blocks the signal: give it 2 s.
      int waited = 0;
      while (gAnswered.load() == 0 && waited < 2000) {
        struct timespec ts = {0, 1000000};
        nanosleep(&ts, nullptr);
        waited++;
        if (waited % 100 == 0 && syscall(SYS_tgkill, pid, tid, 0) != 0) break;  // it has ended
      }
      if (gAnswered.load() == 0 && syscall(SYS_tgkill, pid, tid, 0) == 0) {
        step = "a thread did not take the signal (blocked?)";
        err = ETIMEDOUT;
        break;
      }
      if (gErr.load() != 0) {
        step = "drop (in a thread)";
        err = gErr.load();
        break;
      }
    }
    if (step != nullptr) break;
    if (int e = dropOwn()) {
      step = "drop";
      err = e;
      break;
    }
    // Read every thread back: done when all agree.
    if (!listTasks(taskFd, tids)) {
      step = "read /proc/self/task";
      err = errno;
      break;
    }
    bool all = true;
    for (int tid : tids) {
      uint64_t eff, bnd;
      bool nnp;
      if (!taskCaps(taskFd, tid, eff, bnd, nnp)) continue;  // it has ended
      if (eff != want || bnd != want || !nnp) all = false;
    }
    if (all) {
      syscall(SYS_rt_sigaction, sig, &old, nullptr, 8);
      close(taskFd);
      return num(env, static_cast<double>(tids.size()));
    }
  }
  syscall(SYS_rt_sigaction, sig, &old, nullptr, 8);
  close(taskFd);
  return failure(env, step ? step : "threads keep their capabilities after 8 rounds", err ? err : EAGAIN);
}

}  // namespace virtiofsd
