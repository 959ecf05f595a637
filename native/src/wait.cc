// Waiting: fd watchers on the thread's libuv loop (watchFd), eventfds, poll(2) and epoll.

#include "addon.h"

#include <poll.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <mutex>
#include <vector>

namespace virtiofsd {

namespace {
// Serializes eventfd reads across every thread of the process (the addon is loaded once per process).
std::mutex eventfdReadLock;
}  // namespace

// watchFd: a uv_poll_t on this env's loop. The handle is ref'd, so it keeps the loop alive while active.
// The callback gets 1 (readable) | 2 (error or hang-up): WATCH_READABLE / WATCH_ERROR in src/native.ts.

namespace {

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

Napi::Value stopWatcherJs(const Napi::CallbackInfo& info) {
  uint32_t id = static_cast<uint32_t>(reinterpret_cast<uintptr_t>(info.Data()));
  NativeAddon* a = info.Env().GetInstanceData<NativeAddon>();
  if (a != nullptr) a->StopWatcher(id, true);
  return info.Env().Undefined();
}

}  // namespace

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

Napi::Value NativeAddon::WatchFd(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int32_t fd;
  ARGS_OR_THROW(args(info, fd));
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

// eventfd(initval, blocking?): EFD_NONBLOCK unless `blocking` (tests of frontends whose eventfds block).
Napi::Value NativeAddon::Eventfd(const Napi::CallbackInfo& info) {
  return callWith(info, [](uint32_t init, Flag blocking) {
    return eventfd(init, (blocking.on ? 0 : EFD_NONBLOCK) | EFD_CLOEXEC);
  });
}

Napi::Value NativeAddon::EventfdWrite(const Napi::CallbackInfo& info) {
  int32_t fd;
  uint64_t v;
  ARGS_OR_THROW(args(info, fd, v));
  long r = NOINTR(write(fd, &v, sizeof v));
  if (r < 0) return num(info.Env(), -errno);
  return num(info.Env(), r == sizeof v ? 0 : -EIO);
}

// Reads (and so resets) an eventfd's counter without ever blocking, whatever the mode of its file
// description: kick eventfds come from the frontend, which may have made them blocking (nothing in the
// vhost-user spec asks for EFD_NONBLOCK), and several workers wait on the same one, so one may find it
// drained by another. Under one process-wide lock, poll with timeout 0 and read only if readable: the
// counter of an eventfd only grows between reads, and every reader of it in this process takes the
// lock, so a read after a readable poll cannot block. (The frontend writes kicks; it never reads them.)
// The counter, -EAGAIN when it is 0, or -errno.
Napi::Value NativeAddon::EventfdRead(const Napi::CallbackInfo& info) {
  int32_t fd;
  ARGS_OR_THROW(args(info, fd));
  uint64_t v = 0;
  long r;
  {
    std::lock_guard<std::mutex> hold(eventfdReadLock);
    struct pollfd p = {fd, POLLIN, 0};
    long pr = NOINTR(poll(&p, 1, 0));
    if (pr < 0) return num(info.Env(), -errno);
    if (p.revents & POLLNVAL) return num(info.Env(), -EBADF);
    if (pr == 0 || !(p.revents & POLLIN)) return num(info.Env(), -EAGAIN);
    r = NOINTR(read(fd, &v, sizeof v));
  }
  if (r < 0) return num(info.Env(), -errno);
  if (r != sizeof v) return num(info.Env(), -EIO);
  return num(info.Env(), static_cast<double>(v));
}

Napi::Value NativeAddon::Poll(const Napi::CallbackInfo& info) {
  Int32s fds, rev;
  uint32_t n;
  int32_t timeout;
  ARGS_OR_THROW(args(info, fds, n, timeout, rev));
  ARGS_OR_THROW((n <= fds.len && n <= rev.len) || typeError(info.Env(), "n exceeds the fds or revents array"));
  struct pollfd stackPfd[64];
  std::vector<struct pollfd> heapPfd;
  struct pollfd* pfd = stackPfd;
  if (n > 64) {
    heapPfd.resize(n);
    pfd = heapPfd.data();
  }
  for (uint32_t i = 0; i < n; i++) {
    pfd[i].fd = fds.data[i];
    pfd[i].events = POLLIN;
    pfd[i].revents = 0;
  }
  // Not retried on EINTR: the caller (a worker loop) re-checks its state and polls again.
  int r = poll(pfd, n, timeout);
  if (r < 0) return num(info.Env(), -errno);
  for (uint32_t i = 0; i < n; i++) rev.data[i] = pfd[i].revents;
  return num(info.Env(), r);
}

// Queue workers wait on the kick eventfds through one epoll set each. EPOLLEXCLUSIVE (Linux 4.5) makes
// a kick wake one idle worker instead of all of them (a thundering herd that, on a small host, steals
// CPU from the guest's vCPUs).
Napi::Value NativeAddon::EpollCreate(const Napi::CallbackInfo& info) {
  return res(info.Env(), epoll_create1(EPOLL_CLOEXEC));
}

Napi::Value NativeAddon::EpollAdd(const Napi::CallbackInfo& info) {
  return callWith(info, [](int32_t epfd, int32_t fd, Flag exclusive) {
    struct epoll_event ev;
    memset(&ev, 0, sizeof ev);
    // Edge-triggered: every write to an eventfd is an event of its own (eventfd_write wakes its waiters
    // whatever the counter held), so a waiter need not read the counter to stop it being reported again:
    // a wakeup costs the epoll_wait alone. Kick fds may be blocking (the frontend's choice), another
    // reason not to read them here.
    ev.events = EPOLLIN | EPOLLET | (exclusive.on ? static_cast<uint32_t>(EPOLLEXCLUSIVE) : 0u);
    ev.data.fd = fd;
    return epoll_ctl(epfd, EPOLL_CTL_ADD, fd, &ev);
  });
}

// Blocks the calling thread (a worker). Ready fds go to out[0..n); -EINTR is returned, not retried.
Napi::Value NativeAddon::EpollWait(const Napi::CallbackInfo& info) {
  int32_t epfd, timeout;
  Int32s out;
  ARGS_OR_THROW(args(info, epfd, out, timeout));
  struct epoll_event evs[64];
  int max = out.len < 64 ? static_cast<int>(out.len) : 64;
  ARGS_OR_THROW(max > 0 || typeError(info.Env(), "empty output array"));
  int r = epoll_wait(epfd, evs, max, timeout);
  if (r < 0) return num(info.Env(), -errno);
  for (int i = 0; i < r; i++) out.data[i] = evs[i].data.fd;
  return num(info.Env(), r);
}

}  // namespace virtiofsd
