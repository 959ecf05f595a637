// --seccomp=kill|log|trap: a system call filter on every thread of the process (docs/seccomp.md).
//
// The daemon installs it once it serves (the worker pool running, every module and the addon loaded),
// so the list below is what a serving daemon calls, measured under strace (docs/seccomp.md says how):
// Node 20 and its threads (V8's platform and JIT, libuv's loop and threadpool, worker_threads), glibc,
// this addon's wrappers, prom-client, the metrics HTTP server, the syslog sink, SIGTERM shutdown.
// What only start-up needs (execve, bind, listen, setrlimit, seccomp itself) is not on it.
//
// The filter is classic BPF built here (no libseccomp): the architecture first (any other, such as a
// 32-bit int 0x80 call from this 64-bit process, is killed in every mode), then on x86_64 the x32 ABI
// (numbers with bit 30 set) is refused, ioctl is let through for a few requests only, then a binary
// search over the sorted list: a listed call is allowed, anything else gets the mode's action.

#include "addon.h"

#include <linux/audit.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <signal.h>
#include <stddef.h>
#include <sys/ioctl.h>
#include <sys/prctl.h>
#include <sys/syscall.h>

#include <algorithm>
#include <vector>

namespace virtiofsd {

namespace {

#if defined(__x86_64__)
constexpr uint32_t kArch = AUDIT_ARCH_X86_64;
#elif defined(__aarch64__)
constexpr uint32_t kArch = AUDIT_ARCH_AARCH64;
#else
constexpr uint32_t kArch = 0;  // no filter for this architecture: seccompInstall says ENOSYS
#endif

// Calls only some architectures have (aarch64 has only the *at and p* forms): absent ones are skipped.
constexpr long kAbsent = -1;
#ifndef SYS_access
#define SYS_access kAbsent
#endif
#ifndef SYS_epoll_wait
#define SYS_epoll_wait kAbsent
#endif
#ifndef SYS_poll
#define SYS_poll kAbsent
#endif
#ifndef SYS_readlink
#define SYS_readlink kAbsent
#endif
#ifndef SYS_unlink
#define SYS_unlink kAbsent
#endif
#ifndef SYS_mkdir
#define SYS_mkdir kAbsent
#endif
#ifndef SYS_rseq
#define SYS_rseq kAbsent
#endif
#ifndef SYS_clone3
#define SYS_clone3 kAbsent
#endif
#ifndef SYS_faccessat2
#define SYS_faccessat2 439
#endif
#ifndef SYS_setxattrat
#define SYS_setxattrat 463
#endif
#ifndef SYS_epoll_pwait2
#define SYS_epoll_pwait2 kAbsent
#endif

// The allowlist, by who needs it (docs/seccomp.md has the measurements behind it). A call may appear
// in several groups; install() sorts and dedupes. ioctl is not here: kIoctls below says which requests.
const long kAllowed[] = {
    // Memory. V8's heap and JIT code (mmap, mprotect to flip code pages, madvise to give pages back),
    // glibc's malloc (brk; mremap, not seen, grows large blocks in realloc), guest RAM (the addon maps
    // a frontend's memfds and unmaps them when a region goes).
    SYS_mmap, SYS_munmap, SYS_mprotect, SYS_madvise, SYS_mremap, SYS_brk,

    // Threads. worker_threads (piscina replaces a worker that died: a new thread after the install, so
    // what a thread does to start and stop is here: clone3, or clone where the kernel lacks it, rseq,
    // set_robust_list, exit), V8's platform threads, libuv's threadpool; locks, waits and back-off.
    SYS_clone, SYS_clone3, SYS_set_robust_list, SYS_rseq, SYS_futex, SYS_sched_yield, SYS_sched_getaffinity,
    SYS_gettid, SYS_getpid, SYS_exit, SYS_exit_group, SYS_nanosleep, SYS_clock_nanosleep,

    // Clocks. Normally answered by the vDSO without a system call; the kernel falls back to the real
    // call when the clock source has no vDSO support (some hypervisors' clocks).
    SYS_clock_gettime, SYS_clock_getres, SYS_gettimeofday,

    // Signals. SIGTERM/SIGINT/SIGUSR1 through libuv's signal pipe, the SIGBUS guard (sigbus.cc), this
    // file's SIGSYS handler (--seccomp=trap sends SIGSYS again with tgkill), calls restarted after one.
    SYS_rt_sigaction, SYS_rt_sigprocmask, SYS_rt_sigreturn, SYS_tgkill, SYS_restart_syscall,

    // The event loops: libuv's (epoll, its eventfd and signal pipe), the workers' epoll_wait on kick
    // eventfds (wait.cc), the addon's zero-timeout poll before an eventfd read (ppoll on aarch64).
    SYS_epoll_create1, SYS_epoll_ctl, SYS_epoll_wait, SYS_epoll_pwait, SYS_poll, SYS_ppoll, SYS_eventfd2,
    SYS_pipe2, SYS_read, SYS_write, SYS_writev, SYS_close, SYS_fcntl,

    // The passthrough file system (fs.cc, io.cc, xattr.cc, process.cc): every request the guest can
    // send, also those no measurement saw (faccessat2 serves FUSE_ACCESS). Per-thread credentials are
    // raw setfsuid/setfsgid calls; setgroups too, for the caller's supplementary groups.
    SYS_openat, SYS_openat2, SYS_newfstatat, SYS_fstat, SYS_statx, SYS_fstatfs, SYS_getdents64, SYS_readlinkat,
    SYS_mkdirat, SYS_mknodat, SYS_unlinkat, SYS_renameat2, SYS_linkat, SYS_symlinkat, SYS_fchmodat,
    SYS_fchownat, SYS_utimensat, SYS_faccessat2, SYS_ftruncate, SYS_fallocate, SYS_copy_file_range,
    SYS_fsync, SYS_fdatasync, SYS_syncfs, SYS_lseek, SYS_pread64, SYS_preadv, SYS_pwritev, SYS_fgetxattr,
    SYS_fsetxattr, SYS_flistxattr, SYS_fremovexattr, SYS_setfsuid, SYS_setfsgid, SYS_setgroups,
    // --security-label: a new symlink's or special node's security context (xattr.cc setxattrProc)
    SYS_setxattrat,

    // Node's own file calls: fs.* from JS (prom-client reads /proc/self, the SIGUSR1 status line counts
    // /proc/self/fd, stop() removes the socket file), module and addon loading in a new worker.
    SYS_access, SYS_readlink, SYS_unlink,

    // Sockets. The vhost-user connection (accept4, recvmsg/sendmsg with SCM_RIGHTS), the metrics HTTP
    // server (accept4, setsockopt TCP_NODELAY, shutdown), the syslog sink (a datagram socket, connected
    // anew when syslog restarts); getsockopt (SO_TYPE) and getsockname when Node first looks at a
    // stdio fd that is a socket (journald's stdout, a parent's socketpair) to tell what kind it is.
    SYS_socket, SYS_connect, SYS_accept4, SYS_recvmsg, SYS_sendmsg, SYS_setsockopt, SYS_shutdown,
    SYS_getsockopt, SYS_getsockname,

    // The process. prom-client's default metrics (getrusage; /proc reads above), the fd limit
    // (prlimit64), what a new worker's Node asks about its process (ids, capabilities, uname, memory,
    // the working directory, randomness for V8's seeds).
    SYS_getrusage, SYS_prlimit64, SYS_getuid, SYS_geteuid, SYS_getgid, SYS_getegid, SYS_capget, SYS_uname,
    SYS_sysinfo, SYS_getcwd, SYS_getrandom,

    // The test runner. tap preloads a module into every Node process and thread it starts (NODE_OPTIONS
    // --import): it reads the parent's pid in each new thread and at exit writes a JSON file under .tap/
    // (mkdir -p, then the file calls above). mkdir is mkdirat(AT_FDCWD), already listed.
    SYS_getppid, SYS_mkdir,
};

// ioctl(2), by request: libuv makes sockets non-blocking with FIONBIO; Node asks whether stdio is a
// terminal (TCGETS, TIOCGPTN), its size (TIOCGWINSZ) and restores a terminal's mode at exit (TCSETS).
// Any other request gets the mode's action: among them TIOCSTI, which would type into the terminal
// the daemon was started from.
const uint32_t kIoctls[] = {FIONBIO, FIOCLEX, FIONCLEX, TCGETS, TCSETS, TIOCGWINSZ, TIOCGPTN};

// Leaves of the search tree: at most this many numbers compared one after another.
constexpr size_t kLeaf = 4;

sock_filter stmt(uint16_t code, uint32_t k) { return BPF_STMT(code, k); }
sock_filter jump(uint16_t code, uint32_t k, uint8_t jt, uint8_t jf) { return BPF_JUMP(code, k, jt, jf); }

// Emits the search over nrs[0, n): a listed number returns ALLOW, any other `deny`. Inner nodes split
// at the middle number (jge: the right half follows the left half's code); leaves compare each number
// and end with their own two returns, so every jump is short. False when a jump would not fit in 8 bits.
bool emitSearch(std::vector<sock_filter>& prog, const long* nrs, size_t n, uint32_t deny) {
  if (n <= kLeaf) {
    for (size_t i = 0; i < n; i++)
      prog.push_back(jump(BPF_JMP | BPF_JEQ | BPF_K, static_cast<uint32_t>(nrs[i]), static_cast<uint8_t>(n - i), 0));
    prog.push_back(stmt(BPF_RET | BPF_K, deny));
    prog.push_back(stmt(BPF_RET | BPF_K, SECCOMP_RET_ALLOW));
    return true;
  }
  size_t half = n / 2;
  size_t at = prog.size();
  prog.push_back(jump(BPF_JMP | BPF_JGE | BPF_K, static_cast<uint32_t>(nrs[half]), 0, 0));
  if (!emitSearch(prog, nrs, half, deny)) return false;
  size_t skip = prog.size() - at - 1;
  if (skip > 255) return false;
  prog[at].jt = static_cast<uint8_t>(skip);
  return emitSearch(prog, nrs + half, n - half, deny);
}

// --seccomp=trap: the SIGSYS the kernel sends for a call outside the list. One line to stderr, written
// with write(2) and formatted here (nothing in a signal handler may allocate or take a lock), then
// SIGSYS again with the default action, so the process ends as killed by SIGSYS (status and core as
// in kill mode) rather than with an exit code of ours. The signal is sent while this handler blocks
// it and is delivered when the handler returns, before the interrupted code runs again.
void onSigsys(int sig, siginfo_t* si, void*) {
  char line[80];
  static const char kHead[] = "virtiofsd-ts: seccomp: blocked system call ";
  size_t len = sizeof kHead - 1;
  memcpy(line, kHead, len);
  len += formatDecimal(line + len, static_cast<uint32_t>(si->si_syscall));
  line[len++] = '\n';
  ssize_t w = write(STDERR_FILENO, line, len);
  (void)w;
  struct sigaction dfl = {};
  dfl.sa_handler = SIG_DFL;
  sigemptyset(&dfl.sa_mask);
  sigaction(sig, &dfl, nullptr);
  if (syscall(SYS_tgkill, getpid(), syscall(SYS_gettid), sig) != 0) _exit(128 + sig);  // cannot happen: tgkill is listed
}

// The mode's action for a call outside the list (mode as src/sandbox/seccomp.ts numbers them).
bool actionOf(int32_t mode, uint32_t& action) {
  switch (mode) {
    case 1: action = SECCOMP_RET_KILL_PROCESS; return true;
    case 2: action = SECCOMP_RET_LOG; return true;
    case 3: action = SECCOMP_RET_TRAP; return true;
    default: return false;
  }
}

// Set once a filter is in: seccomp(2) is not on the list, so a second install would be refused by the
// first filter's own action (a kill): answer EALREADY instead.
bool installed = false;

long install(int32_t mode) {
  uint32_t deny;
  if (!actionOf(mode, deny)) return -EINVAL;
  if (installed) return -EALREADY;
  if (kArch == 0) return -ENOSYS;
  // A kernel that lacks the action (KILL_PROCESS and LOG arrived in 4.14) would run it as a kill.
  if (syscall(SYS_seccomp, SECCOMP_GET_ACTION_AVAIL, 0, &deny) != 0) return -errno;

  std::vector<long> nrs;
  for (long nr : kAllowed)
    if (nr != kAbsent) nrs.push_back(nr);
  std::sort(nrs.begin(), nrs.end());
  nrs.erase(std::unique(nrs.begin(), nrs.end()), nrs.end());

  std::vector<sock_filter> prog;
  prog.push_back(stmt(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, arch)));
  prog.push_back(jump(BPF_JMP | BPF_JEQ | BPF_K, kArch, 1, 0));
  prog.push_back(stmt(BPF_RET | BPF_K, SECCOMP_RET_KILL_PROCESS));
  prog.push_back(stmt(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr)));
#if defined(__x86_64__)
  // x32 calls carry __X32_SYSCALL_BIT: refused here, before the search (which matches none of them).
  prog.push_back(jump(BPF_JMP | BPF_JGE | BPF_K, 0x40000000u, 0, 1));
  prog.push_back(stmt(BPF_RET | BPF_K, deny));
#endif
  // ioctl: its request (the low 32 bits of the second argument: the kernel takes an unsigned int).
  constexpr size_t nIoctls = sizeof kIoctls / sizeof kIoctls[0];
  prog.push_back(jump(BPF_JMP | BPF_JEQ | BPF_K, SYS_ioctl, 0, nIoctls + 3));
  prog.push_back(stmt(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, args[1])));
  for (size_t i = 0; i < nIoctls; i++)
    prog.push_back(jump(BPF_JMP | BPF_JEQ | BPF_K, kIoctls[i], static_cast<uint8_t>(nIoctls - i), 0));
  prog.push_back(stmt(BPF_RET | BPF_K, deny));
  prog.push_back(stmt(BPF_RET | BPF_K, SECCOMP_RET_ALLOW));
  if (!emitSearch(prog, nrs.data(), nrs.size(), deny) || prog.size() > BPF_MAXINSNS) return -E2BIG;
  sock_fprog fprog = {static_cast<unsigned short>(prog.size()), prog.data()};

  if (mode == 3) {
    struct sigaction sa = {};
    sa.sa_sigaction = onSigsys;
    sa.sa_flags = SA_SIGINFO | SA_ONSTACK;
    sigemptyset(&sa.sa_mask);
    if (sigaction(SIGSYS, &sa, nullptr) != 0) return -errno;
  }
  // Without CAP_SYS_ADMIN a filter needs no_new_privs; TSYNC sets it on every thread it syncs.
  if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0) return -errno;
  long r = syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, SECCOMP_FILTER_FLAG_TSYNC, &fprog);
  if (r < 0) return -errno;
  // TSYNC's failure is a thread id, not -1: a thread that cannot take the filter (it has one of its
  // own that ours does not descend from). Nothing was installed on any thread; say EAGAIN.
  if (r > 0) return -EAGAIN;
  installed = true;
  return 0;
}

}  // namespace

// seccompInstall(mode): 1 kill, 2 log, 3 trap. 0, or -errno with nothing installed (-EINVAL: bad mode,
// -ENOSYS: no filter for this architecture, -EOPNOTSUPP: the kernel lacks the action, -EAGAIN: a thread
// could not be synchronised, -EALREADY: installed before). Called from the main thread only.
Napi::Value NativeAddon::SeccompInstall(const Napi::CallbackInfo& info) {
  return callWith(info, [](int32_t mode) -> long {
    long r = install(mode);
    if (r < 0) {
      errno = static_cast<int>(-r);
      return -1;
    }
    return 0;
  });
}

}  // namespace virtiofsd
