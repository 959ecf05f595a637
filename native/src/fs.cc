// File system calls on a directory fd and a guest name (the *at family, openat2, faccessat2). A null
// name means the dirfd itself (AT_EMPTY_PATH, or /proc/self/fd/N where the call has no such flag).

#include "addon.h"

#include <fcntl.h>
#include <stdio.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <unistd.h>
#include <linux/openat2.h>

#ifndef SYS_faccessat2
#define SYS_faccessat2 439
#endif
#ifndef SYS_openat2
#define SYS_openat2 437
#endif

namespace virtiofsd {

namespace {

// fd's /proc/self/fd/N magic link as (dirfd, path): under the /proc/self/fd fd set by setProcFd when
// there is one (inside the sandbox /proc is not reachable by path), else by its absolute path.
int procFdPath(char* out, size_t size, int fd) {
  int dir = procSelfFd.load(std::memory_order_relaxed);
  if (dir >= 0) {
    snprintf(out, size, "%d", fd);
    return dir;
  }
  snprintf(out, size, "/proc/self/fd/%d", fd);
  return AT_FDCWD;
}

// Where a call without AT_EMPTY_PATH finds `name` under `dirfd`: a null name is the dirfd itself, as its
// /proc/self/fd/N magic link (followed: the call's own flags, such as AT_SYMLINK_NOFOLLOW, are dropped).
struct AtOrProc {
  int dirfd;
  const char* path;
  int flags;
  char proc[32];
  AtOrProc(int fd, const Name& name, int callFlags) : dirfd(fd), path(name.buf), flags(callFlags) {
    if (!name.isNull) return;
    dirfd = procFdPath(proc, sizeof proc, fd);
    path = proc;
    flags = 0;
  }
};

// FUSE's rdev is the kernel's new_encode_dev (the guest decodes it with new_decode_dev).
uint32_t encodeDev(dev_t d) {
  uint32_t maj = major(d), min = minor(d);
  return (min & 0xff) | (maj << 8) | ((min & ~0xffu) << 12);
}

}  // namespace

Napi::Value NativeAddon::Openat2(const Napi::CallbackInfo& info) {
  return callWith(info, [](int32_t dirfd, const Name& name, uint32_t flags, uint32_t mode, uint64_t resolve) {
    struct open_how how;
    memset(&how, 0, sizeof how);
    how.flags = static_cast<uint64_t>(flags | O_CLOEXEC);
    // openat2 rejects a mode without O_CREAT/O_TMPFILE (EINVAL), unlike openat, which ignores it.
    how.mode = (flags & O_CREAT) || (flags & __O_TMPFILE) == __O_TMPFILE ? (mode & 07777) : 0;
    how.resolve = resolve;
    return NOINTR(syscall(SYS_openat2, dirfd, name.buf, &how, sizeof how));
  });
}

Napi::Value NativeAddon::OpenProcFd(const Napi::CallbackInfo& info) {
  return callWith(info, [](int32_t dir, int32_t fd, uint32_t flags) {
    char buf[16];
    snprintf(buf, sizeof buf, "%d", fd);
    // /proc/self/fd/N is a magic link: it must be followed, so O_NOFOLLOW (which would give ELOOP) and
    // O_CREAT (meaningless on an existing inode) are dropped.
    flags &= ~static_cast<uint32_t>(O_NOFOLLOW | O_CREAT | O_EXCL);
    return NOINTR(openat(dir, buf, static_cast<int>(flags | O_CLOEXEC)));
  });
}

Napi::Value NativeAddon::StatAt(const Napi::CallbackInfo& info) {
  int32_t dirfd, flags;
  NameOrNull name;
  Bytes outBuf;
  ARGS_OR_THROW(args(info, dirfd, name, flags, outBuf));
  NAME_OR_ERR(name);
  ARGS_OR_THROW(outHolds(info.Env(), outBuf, 96, "statAt out buffer must hold 96 bytes"));
  struct stat st;
  // The fd itself: fstat (it works on O_PATH fds, and on a symlink's O_PATH fd it gives the link, as
  // fstatat with AT_EMPTY_PATH does) skips the empty-path copy and lookup fstatat makes the kernel do.
  int r = name.isNull ? fstat(dirfd, &st) : fstatat(dirfd, name.buf, &st, flags);
  if (r < 0) return num(info.Env(), -errno);
  // struct fuse_attr (linux/fuse.h), then u64 st_dev.
  uint8_t* out = outBuf.data;
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
  return num(info.Env(), 0);
}

Napi::Value NativeAddon::Mkdirat(const Napi::CallbackInfo& info) {
  return callWith(info, [](int32_t dirfd, const Name& name, uint32_t mode) { return mkdirat(dirfd, name.buf, mode); });
}

Napi::Value NativeAddon::Mknodat(const Napi::CallbackInfo& info) {
  return callWith(info, [](int32_t dirfd, const Name& name, uint32_t mode, uint32_t rdev) {
    // rdev arrives new_encode_dev'd from FUSE; decode it into glibc's dev_t.
    dev_t d = makedev((rdev & 0xfff00) >> 8, (rdev & 0xff) | ((rdev >> 12) & 0xfff00));
    return mknodat(dirfd, name.buf, mode, d);
  });
}

Napi::Value NativeAddon::Unlinkat(const Napi::CallbackInfo& info) {
  return callWith(info, [](int32_t dirfd, const Name& name, int32_t flags) {
    return unlinkat(dirfd, name.buf, flags);
  });
}

Napi::Value NativeAddon::Renameat2(const Napi::CallbackInfo& info) {
  return callWith(info, [](int32_t od, const Name& on, int32_t nd, const Name& nn, uint32_t flags) {
    return syscall(SYS_renameat2, od, on.buf, nd, nn.buf, flags);
  });
}

Napi::Value NativeAddon::Linkat(const Napi::CallbackInfo& info) {
  return callWith(info, [](int32_t od, const NameOrNull& on, int32_t nd, const Name& nn, int32_t flags) {
    if (!on.isNull) return linkat(od, on.buf, nd, nn.buf, flags);
    // AT_EMPTY_PATH needs CAP_DAC_READ_SEARCH (ENOENT without it); /proc/self/fd/N with AT_SYMLINK_FOLLOW
    // links the same inode without it.
    if (linkat(od, "", nd, nn.buf, flags | AT_EMPTY_PATH) == 0) return 0;
    if (errno != ENOENT) return -1;
    char path[32];
    int pd = procFdPath(path, sizeof path, od);
    return linkat(pd, path, nd, nn.buf, AT_SYMLINK_FOLLOW);
  });
}

Napi::Value NativeAddon::Symlinkat(const Napi::CallbackInfo& info) {
  return callWith(info, [](const LinkTarget& target, int32_t dirfd, const Name& name) {
    return symlinkat(target.buf, dirfd, name.buf);
  });
}

Napi::Value NativeAddon::Readlinkat(const Napi::CallbackInfo& info) {
  return callWith(info, [](int32_t dirfd, const NameOrNull& name, Bytes out) {
    // name null: readlinkat(fd, "") reads the symlink an O_PATH|O_NOFOLLOW fd refers to.
    return readlinkat(dirfd, name.buf, reinterpret_cast<char*>(out.data), out.len);
  });
}

Napi::Value NativeAddon::Fchmodat(const Napi::CallbackInfo& info) {
  return callWith(info, [](int32_t dirfd, const NameOrNull& name, uint32_t mode) {
    // fchmodat has no AT_EMPTY_PATH (before fchmodat2, Linux 6.6), and fchmod fails on O_PATH fds.
    AtOrProc at(dirfd, name, 0);
    return fchmodat(at.dirfd, at.path, mode, 0);
  });
}

Napi::Value NativeAddon::Fchownat(const Napi::CallbackInfo& info) {
  return callWith(info, [](int32_t dirfd, const NameOrNull& name, uint32_t uid, uint32_t gid, int32_t flags) {
    if (name.isNull) flags |= AT_EMPTY_PATH;
    return fchownat(dirfd, name.buf, uid, gid, flags);
  });
}

Napi::Value NativeAddon::Utimensat(const Napi::CallbackInfo& info) {
  return callWith(info, [](int32_t dirfd, const NameOrNull& name, int64_t as, int64_t an, int64_t ms, int64_t mn,
                           int32_t flags) {
    struct timespec ts[2];
    ts[0].tv_sec = as;
    ts[0].tv_nsec = an;
    ts[1].tv_sec = ms;
    ts[1].tv_nsec = mn;
    AtOrProc at(dirfd, name, flags);
    return utimensat(at.dirfd, at.path, ts, at.flags);
  });
}

Napi::Value NativeAddon::Faccessat(const Napi::CallbackInfo& info) {
  return callWith(info, [](int32_t dirfd, const NameOrNull& name, int32_t mode, int32_t flags) {
    if (name.isNull) flags |= AT_EMPTY_PATH;
    // The raw faccessat2 (Linux 5.8): honours flags exactly instead of glibc's emulation.
    return syscall(SYS_faccessat2, dirfd, name.buf, mode, flags);
  });
}

// setProcFd(fd): the process's fd of /proc/self/fd (Passthrough opens it), used wherever the addon
// names an fd by its magic link. Process wide, as fds are: a global, not per-env state.
Napi::Value NativeAddon::SetProcFd(const Napi::CallbackInfo& info) {
  int32_t fd;
  ARGS_OR_THROW(args(info, fd));
  procSelfFd.store(fd, std::memory_order_relaxed);
  return num(info.Env(), 0);
}

// procFdLink(fd, out): what fd's /proc/self/fd link reads ("anon_inode:[eventfd]"...), into out.
// Its length or -errno.
Napi::Value NativeAddon::ProcFdLink(const Napi::CallbackInfo& info) {
  return callWith(info, [](int32_t fd, const Bytes& out) -> long {
    char path[32];
    int dir = procFdPath(path, sizeof path, fd);
    return readlinkat(dir, path, reinterpret_cast<char*>(out.data), out.len);
  });
}

// procSelfRead(name, out): /proc/self/<name> (e.g. "status") read into out, through the /proc/self/fd
// fd when there is one. Bytes read or -errno.
Napi::Value NativeAddon::ProcSelfRead(const Napi::CallbackInfo& info) {
  return callWith(info, [](const Name& name, const Bytes& out) -> long {
    int dir = procSelfFd.load(std::memory_order_relaxed);
    std::string p = dir >= 0 ? std::string("../") + name.buf : std::string("/proc/self/") + name.buf;
    int fd = openat(dir >= 0 ? dir : AT_FDCWD, p.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) return -1;
    long n = read(fd, out.data, out.len);
    int e = errno;
    close(fd);
    errno = e;
    return n;
  });
}

// procFdCount(): how many fds this process has open (the entries of /proc/self/fd, less the one
// reading it holds), or -errno.
Napi::Value NativeAddon::ProcFdCount(const Napi::CallbackInfo& info) {
  int dir = procSelfFd.load(std::memory_order_relaxed);
  int fd = dir >= 0 ? openat(dir, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC) : open("/proc/self/fd", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) return num(info.Env(), -errno);
  long count = 0;
  long r = forEachDirent(fd, [&count](const char* name) {
    if (name[0] != '.') count++;
  });
  close(fd);
  return num(info.Env(), r < 0 ? static_cast<double>(r) : static_cast<double>(count - 1));
}

}  // namespace virtiofsd
