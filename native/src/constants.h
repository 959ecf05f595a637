// The one list of the constants the addon exports as `constants` (C(name): constants.name) and
// `constants.errno` (E(name)), each taken from the system headers. The JS side names them in
// src/native.ts (NATIVE_CONSTANTS, ERRNO_NAMES); test/unit/abi-drift checks that both sides agree.

#ifndef VIRTIOFSD_NATIVE_CONSTANTS_H
#define VIRTIOFSD_NATIVE_CONSTANTS_H

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <linux/falloc.h>
#include <linux/openat2.h>
#include <poll.h>
#include <stdio.h>
#include <sys/stat.h>
#include <unistd.h>

// renameat2 flags (include/uapi/linux/fs.h); older glibc headers lack them.
#ifndef RENAME_NOREPLACE
#define RENAME_NOREPLACE (1 << 0)
#endif
#ifndef RENAME_EXCHANGE
#define RENAME_EXCHANGE (1 << 1)
#endif
#ifndef RENAME_WHITEOUT
#define RENAME_WHITEOUT (1 << 2)
#endif

#define NATIVE_CONSTANTS(C)                                                                              \
  C(O_RDONLY) C(O_WRONLY) C(O_RDWR) C(O_ACCMODE) C(O_CREAT) C(O_EXCL) C(O_NOCTTY) C(O_TRUNC)               \
  C(O_APPEND) C(O_NONBLOCK) C(O_DSYNC) C(O_SYNC) C(O_DIRECT) C(O_LARGEFILE) C(O_DIRECTORY)                 \
  C(O_NOFOLLOW) C(O_NOATIME) C(O_CLOEXEC) C(O_PATH) C(O_TMPFILE) C(O_ASYNC) C(O_NDELAY)                    \
  C(RESOLVE_NO_XDEV) C(RESOLVE_NO_MAGICLINKS) C(RESOLVE_NO_SYMLINKS) C(RESOLVE_BENEATH)                     \
  C(RESOLVE_IN_ROOT) C(RESOLVE_CACHED)                                                                     \
  C(AT_FDCWD) C(AT_EMPTY_PATH) C(AT_SYMLINK_NOFOLLOW) C(AT_SYMLINK_FOLLOW) C(AT_REMOVEDIR)                  \
  C(AT_EACCESS) C(AT_NO_AUTOMOUNT)                                                                         \
  C(RENAME_NOREPLACE) C(RENAME_EXCHANGE) C(RENAME_WHITEOUT)                                                \
  C(UTIME_NOW) C(UTIME_OMIT)                                                                               \
  C(S_IFMT) C(S_IFSOCK) C(S_IFLNK) C(S_IFREG) C(S_IFBLK) C(S_IFDIR) C(S_IFCHR) C(S_IFIFO)                  \
  C(S_ISUID) C(S_ISGID) C(S_ISVTX)                                                                         \
  C(SEEK_SET) C(SEEK_CUR) C(SEEK_END) C(SEEK_DATA) C(SEEK_HOLE)                                            \
  C(FALLOC_FL_KEEP_SIZE) C(FALLOC_FL_PUNCH_HOLE) C(FALLOC_FL_COLLAPSE_RANGE) C(FALLOC_FL_ZERO_RANGE)       \
  C(FALLOC_FL_INSERT_RANGE) C(FALLOC_FL_UNSHARE_RANGE)                                                     \
  C(F_OK) C(R_OK) C(W_OK) C(X_OK)                                                                          \
  C(POLLIN) C(POLLOUT) C(POLLERR) C(POLLHUP) C(POLLNVAL)                                                   \
  C(NAME_MAX) C(PATH_MAX) C(IOV_MAX)

#define NATIVE_ERRNOS(E)                                                                                 \
  E(EPERM) E(ENOENT) E(ESRCH) E(EINTR) E(EIO) E(ENXIO) E(E2BIG) E(ENOEXEC) E(EBADF) E(ECHILD)              \
  E(EAGAIN) E(EWOULDBLOCK) E(ENOMEM) E(EACCES) E(EFAULT) E(ENOTBLK) E(EBUSY) E(EEXIST) E(EXDEV)            \
  E(ENODEV) E(ENOTDIR) E(EISDIR) E(EINVAL) E(ENFILE) E(EMFILE) E(ENOTTY) E(ETXTBSY) E(EFBIG)               \
  E(ENOSPC) E(ESPIPE) E(EROFS) E(EMLINK) E(EPIPE) E(EDOM) E(ERANGE) E(EDEADLK) E(ENAMETOOLONG)             \
  E(ENOLCK) E(ENOSYS) E(ENOTEMPTY) E(ELOOP) E(ENOMSG) E(EIDRM) E(ENOSTR) E(ENODATA) E(ETIME)               \
  E(ENOSR) E(ENOLINK) E(EPROTO) E(EBADMSG) E(EOVERFLOW) E(EILSEQ) E(EUSERS) E(ENOTSOCK)                    \
  E(EDESTADDRREQ) E(EMSGSIZE) E(EPROTOTYPE) E(ENOPROTOOPT) E(EPROTONOSUPPORT) E(EOPNOTSUPP)                \
  E(ENOTSUP) E(EAFNOSUPPORT) E(EADDRINUSE) E(EADDRNOTAVAIL) E(ENETDOWN) E(ENETUNREACH)                     \
  E(ECONNABORTED) E(ECONNRESET) E(ENOBUFS) E(EISCONN) E(ENOTCONN) E(ETIMEDOUT) E(ECONNREFUSED)             \
  E(EHOSTUNREACH) E(EALREADY) E(EINPROGRESS) E(ESTALE) E(EDQUOT) E(ECANCELED) E(EOWNERDEAD)                \
  E(ENOTRECOVERABLE)

#endif
