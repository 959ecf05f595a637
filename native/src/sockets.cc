// The vhost-user socket: AF_UNIX stream listen/accept/connect, and sendmsg/recvmsg with SCM_RIGHTS fds.

#include "addon.h"

#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

namespace virtiofsd {

namespace {

constexpr size_t kMaxRecvFds = 253;  // SCM_MAX_FD

}  // namespace

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

}  // namespace virtiofsd
