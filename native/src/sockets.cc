// The vhost-user socket: AF_UNIX stream listen/accept/connect, and sendmsg/recvmsg with SCM_RIGHTS fds.

#include "addon.h"

#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

namespace virtiofsd {

namespace {

constexpr size_t kMaxRecvFds = 253;  // SCM_MAX_FD

// An AF_UNIX socket of `type` and the address of `path`, for bind or connect. fd is the socket, or
// -ENAMETOOLONG when the path does not fit sun_path with its NUL (checked before any socket exists), or
// -errno of socket(2).
struct UnixSocket {
  struct sockaddr_un sa;
  int fd;
  UnixSocket(const std::string& path, int type) {
    memset(&sa, 0, sizeof sa);
    sa.sun_family = AF_UNIX;
    if (path.size() >= sizeof sa.sun_path) {
      fd = -ENAMETOOLONG;
      return;
    }
    memcpy(sa.sun_path, path.data(), path.size());
    fd = socket(AF_UNIX, type, 0);
    if (fd < 0) fd = -errno;
  }
  struct sockaddr* addr() { return reinterpret_cast<struct sockaddr*>(&sa); }
};

// A msghdr over the one buffer `buf`, and room for SCM_RIGHTS control data (attached by the caller).
struct FdMsg {
  struct iovec iov;
  struct msghdr msg;
  alignas(struct cmsghdr) char control[CMSG_SPACE(sizeof(int) * kMaxRecvFds)];
  explicit FdMsg(const Slice& buf) : iov{buf.data, buf.len} {
    memset(&msg, 0, sizeof msg);
    msg.msg_iov = &iov;
    msg.msg_iovlen = 1;
  }
};

// sendMsg's fds: an Int32Array, or null/undefined/absent for none.
struct OptionalInt32s : Int32s {};

bool arg(const Napi::CallbackInfo& info, size_t& i, OptionalInt32s& out) {
  if (i >= info.Length() || info[i].IsNull() || info[i].IsUndefined()) {
    i++;
    return true;
  }
  return arg(info, i, static_cast<Int32s&>(out));
}

}  // namespace

Napi::Value NativeAddon::ListenUnix(const Napi::CallbackInfo& info) {
  std::string path;
  int32_t backlog;
  ARGS_OR_THROW(args(info, path, backlog));
  UnixSocket s(path, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC);
  if (s.fd < 0) return num(info.Env(), s.fd);
  if (bind(s.fd, s.addr(), sizeof s.sa) < 0 || listen(s.fd, backlog) < 0) return num(info.Env(), closeAfterError(s.fd));
  return num(info.Env(), s.fd);
}

Napi::Value NativeAddon::AcceptUnix(const Napi::CallbackInfo& info) {
  return callWith(info, [](int32_t fd) { return NOINTR(accept4(fd, nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC)); });
}

Napi::Value NativeAddon::ConnectUnix(const Napi::CallbackInfo& info) {
  std::string path;
  Flag nonblock;  // a listener whose backlog is full answers EAGAIN at once instead of blocking us
  Flag dgram;     // a datagram socket (syslog's /dev/log) instead of a stream
  ARGS_OR_THROW(args(info, path, nonblock, dgram));
  UnixSocket s(path, (dgram.on ? SOCK_DGRAM : SOCK_STREAM) | SOCK_CLOEXEC | (nonblock.on ? SOCK_NONBLOCK : 0));
  if (s.fd < 0) return num(info.Env(), s.fd);
  if (NOINTR(connect(s.fd, s.addr(), sizeof s.sa)) < 0) return num(info.Env(), closeAfterError(s.fd));
  return num(info.Env(), s.fd);
}

// 1 if fd is a listening AF_UNIX stream socket, 0 if it is some other socket or file, -errno on error.
Napi::Value NativeAddon::IsListeningUnixStream(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int32_t fd;
  ARGS_OR_THROW(args(info, fd));
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

// The pid of a connected AF_UNIX socket's peer (SO_PEERCRED: for the connecting side, the process that
// called listen(2)), or -errno.
Napi::Value NativeAddon::PeerPid(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int32_t fd;
  ARGS_OR_THROW(args(info, fd));
  struct ucred cred;
  socklen_t len = sizeof cred;
  if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) < 0) return num(env, -errno);
  return num(env, cred.pid);
}

Napi::Value NativeAddon::RecvMsg(const Napi::CallbackInfo& info) {
  return callWith(info, [](int32_t fd, Slice buf, Int32s fds) {
    for (size_t i = 0; i < fds.len; i++) fds.data[i] = -1;
    FdMsg m(buf);
    m.msg.msg_control = m.control;
    m.msg.msg_controllen = sizeof m.control;
    long r = NOINTR(recvmsg(fd, &m.msg, MSG_CMSG_CLOEXEC));
    if (r < 0) return r;

    // Hand out as many fds as the caller has room for and close the surplus, so a frontend sending too
    // many fds cannot leak descriptors into this process. With MSG_CTRUNC the kernel already dropped the
    // rest.
    size_t got = 0;
    for (struct cmsghdr* c = CMSG_FIRSTHDR(&m.msg); c != nullptr; c = CMSG_NXTHDR(&m.msg, c)) {
      if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS) continue;
      size_t n = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
      const unsigned char* d = CMSG_DATA(c);
      for (size_t k = 0; k < n; k++) {
        int rfd;
        memcpy(&rfd, d + k * sizeof(int), sizeof(int));
        if (got < fds.len)
          fds.data[got++] = rfd;
        else
          close(rfd);
      }
    }
    return r;
  });
}

Napi::Value NativeAddon::SendMsg(const Napi::CallbackInfo& info) {
  int32_t fd;
  Slice buf;
  OptionalInt32s fds;
  ARGS_OR_THROW(args(info, fd, buf, fds));
  const size_t nfds = fds.len;
  if (nfds > kMaxRecvFds) return num(info.Env(), -EINVAL);
  FdMsg m(buf);
  if (nfds > 0) {
    memset(m.control, 0, CMSG_SPACE(sizeof(int) * nfds));
    m.msg.msg_control = m.control;
    m.msg.msg_controllen = CMSG_SPACE(sizeof(int) * nfds);
    struct cmsghdr* c = CMSG_FIRSTHDR(&m.msg);
    c->cmsg_level = SOL_SOCKET;
    c->cmsg_type = SCM_RIGHTS;
    c->cmsg_len = CMSG_LEN(sizeof(int) * nfds);
    memcpy(CMSG_DATA(c), fds.data, sizeof(int) * nfds);
  }
  return res(info.Env(), NOINTR(sendmsg(fd, &m.msg, MSG_NOSIGNAL)));
}

}  // namespace virtiofsd
