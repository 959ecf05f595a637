// Guest RAM that shrinks under the daemon (docs/internals.md, "Guest RAM that shrinks"). A frontend
// whose memfd cannot be sealed (made without MFD_ALLOW_SEALING, a plain or hugetlbfs file) may truncate
// it while we have it mapped; the next load or store on a lost page raises SIGBUS, which by default kills
// the process and with it every guest. Those pages are mapped into one range of the wasm memory (the
// guest window: resident regions and apertures), and are read there by WASM code, by JS typed arrays and
// by the addon's own memcpy, in any thread.
//
// sigbusGuard installs, once per process, a SIGBUS handler that recognises a fault inside the guarded
// range, maps a fresh anonymous zero page over the faulting page (the access is retried on return and
// sees zeros; a store lands in private memory no one shares), counts the fault, remembers its address
// and writes to an eventfd, so the control plane learns of it on its event loop and drops the connection
// that owns the memory. Anything else (a fault outside the range, a SIGBUS sent with kill) goes to the
// handler that was there before, or gets the default action: a real bug still kills the process.
//
// Syscalls that touch a lost page (the preadv/pwritev of file data through the regions' host mappings)
// raise no signal: they fail with EFAULT, which the request path already answers as an error.
//
// V8 on Linux claims SIGSEGV for its wasm trap handler, not SIGBUS (it does on macOS); whatever handler
// was installed before is chained to all the same.

#include "addon.h"

#include <signal.h>
#include <sys/eventfd.h>
#include <sys/mman.h>

#include <atomic>
#include <mutex>

namespace virtiofsd {

namespace {

// Process-wide (the handler is), not per env: the guarded range, the fault record, the eventfd.
std::atomic<uintptr_t> guardLo{0};
std::atomic<uintptr_t> guardHi{0};
std::atomic<uintptr_t> guardBase{0};  // the buffer's first byte: fault offsets are relative to it
std::atomic<uint64_t> faults{0};
std::atomic<uintptr_t> lastFault{0};
std::atomic<int> notifyFd{-1};
struct sigaction previous;  // written once, before the handler can run
std::mutex installLock;
bool installed = false;

static_assert(std::atomic<uintptr_t>::is_always_lock_free && std::atomic<int>::is_always_lock_free &&
                  std::atomic<uint64_t>::is_always_lock_free,
              "the signal handler needs lock-free atomics");

// Maps anonymous zero pages over the page holding `addr`: 4 KiB, or the whole huge page when the
// mapping is hugetlbfs (which cannot be split at 4 KiB: mmap says EINVAL). Only inside [lo, hi).
bool zeroPageAt(uintptr_t addr, uintptr_t lo, uintptr_t hi) {
  static constexpr uintptr_t kSizes[] = {uintptr_t{4} << 10, uintptr_t{2} << 20, uintptr_t{1} << 30};
  for (uintptr_t size : kSizes) {
    uintptr_t start = addr & ~(size - 1);
    if (start < lo || start + size > hi) return false;
    void* r = mmap(reinterpret_cast<void*>(start), size, PROT_READ | PROT_WRITE,
                   MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, -1, 0);
    if (r != MAP_FAILED) return true;
    if (errno != EINVAL) return false;
  }
  return false;
}

// Not ours: what would have happened without us.
void forward(int sig, siginfo_t* si, void* ctx) {
  if ((previous.sa_flags & SA_SIGINFO) != 0 && previous.sa_sigaction != nullptr) {
    previous.sa_sigaction(sig, si, ctx);
    return;
  }
  if ((previous.sa_flags & SA_SIGINFO) == 0 && previous.sa_handler != SIG_DFL && previous.sa_handler != SIG_IGN) {
    previous.sa_handler(sig);
    return;
  }
  bool fault = si->si_code > 0;  // raised by the kernel for an access, not sent by kill/tgkill/sigqueue
  if (!fault && previous.sa_handler == SIG_IGN) return;
  struct sigaction dfl = {};
  dfl.sa_handler = SIG_DFL;
  sigemptyset(&dfl.sa_mask);
  sigaction(sig, &dfl, nullptr);
  // A fault repeats when the access is retried on return and now kills; a sent signal is sent again
  // (blocked inside this handler, it is delivered as we return).
  if (!fault) raise(sig);
}

void onSigbus(int sig, siginfo_t* si, void* ctx) {
  int savedErrno = errno;
  uintptr_t addr = reinterpret_cast<uintptr_t>(si->si_addr);
  uintptr_t lo = guardLo.load(std::memory_order_acquire);
  uintptr_t hi = guardHi.load(std::memory_order_acquire);
  if (si->si_code > 0 && addr >= lo && addr < hi && zeroPageAt(addr, lo, hi)) {
    lastFault.store(addr, std::memory_order_relaxed);
    faults.fetch_add(1, std::memory_order_release);
    int fd = notifyFd.load(std::memory_order_acquire);
    if (fd >= 0) {
      uint64_t one = 1;
      ssize_t w = write(fd, &one, sizeof one);  // async-signal-safe; a full counter (EAGAIN) loses nothing
      (void)w;
    }
    errno = savedErrno;
    return;
  }
  forward(sig, si, ctx);
  errno = savedErrno;
}

}  // namespace

// sigbusGuard(view, off, len): guard view[off, off+len) (page aligned; len 0 guards nothing), installing
// the handler on the first call. The eventfd written on each fault (the same one on every call; it lives
// as long as the process) or -errno.
Napi::Value NativeAddon::SigbusGuard(const Napi::CallbackInfo& info) {
  Bytes mem;
  uint64_t off, len;
  ARGS_OR_THROW(args(info, mem, off, len));
  uint64_t page = static_cast<uint64_t>(sysconf(_SC_PAGESIZE));
  uintptr_t base = reinterpret_cast<uintptr_t>(mem.data);
  if (off % page != 0 || len % page != 0 || off > mem.len || len > mem.len - off || base % page != 0)
    return num(info.Env(), -EINVAL);
  std::lock_guard<std::mutex> hold(installLock);
  if (!installed) {
    int fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (fd < 0) return num(info.Env(), -errno);
    notifyFd.store(fd, std::memory_order_release);
    struct sigaction sa = {};
    sa.sa_sigaction = onSigbus;
    sa.sa_flags = SA_SIGINFO | SA_ONSTACK | SA_RESTART;
    sigemptyset(&sa.sa_mask);
    // Read the previous action before ours is in place: the kernel hands the old one back only after
    // installing the new, and a signal in between would find `previous` still empty.
    if (sigaction(SIGBUS, nullptr, &previous) < 0 || sigaction(SIGBUS, &sa, nullptr) < 0) {
      int e = errno;
      notifyFd.store(-1, std::memory_order_release);
      close(fd);
      return num(info.Env(), -e);
    }
    installed = true;
  }
  // Narrow first, then widen, so the handler never sees a range that is half old and half new.
  guardHi.store(0, std::memory_order_release);
  guardBase.store(base, std::memory_order_release);
  guardLo.store(base + off, std::memory_order_release);
  guardHi.store(base + off + len, std::memory_order_release);
  return num(info.Env(), notifyFd.load(std::memory_order_acquire));
}

// sigbusFaults(): { count, offset }: faults taken in the guarded range since the process started, and
// the last one's address as an offset from the guarded buffer's first byte (-1: none yet).
Napi::Value NativeAddon::SigbusFaults(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  uint64_t count = faults.load(std::memory_order_acquire);
  uintptr_t addr = lastFault.load(std::memory_order_relaxed);
  uintptr_t base = guardBase.load(std::memory_order_acquire);
  Napi::Object out = Napi::Object::New(env);
  out.Set("count", Napi::Number::New(env, static_cast<double>(count)));
  out.Set("offset", Napi::Number::New(env, count == 0 || addr < base ? -1.0 : static_cast<double>(addr - base)));
  return out;
}

}  // namespace virtiofsd
