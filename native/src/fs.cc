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

void procFdPath(char* out, size_t size, int fd) { snprintf(out, size, "/proc/self/fd/%d", fd); }

// FUSE's rdev is the kernel's new_encode_dev (the guest decodes it with new_decode_dev).
uint32_t encodeDev(dev_t d) {
  uint32_t maj = major(d), min = minor(d);
  return (min & 0xff) | (maj << 8) | ((min & ~0xffu) << 12);
}

}  // namespace

Napi::Value NativeAddon::Openat2(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int32_t dirfd;
  Name name;
  uint32_t flags, mode;
  uint64_t resolve;
  ARGS_OR_THROW(argI32(info, 0, dirfd) && argName(info, 1, name, kNameMax, false) && argU32(info, 2, flags) &&
                argU32(info, 3, mode) && argU64(info, 4, resolve));
  NAME_OR_ERR(name);
  struct open_how how;
  memset(&how, 0, sizeof how);
  how.flags = static_cast<uint64_t>(flags | O_CLOEXEC);
  // openat2 rejects a mode without O_CREAT/O_TMPFILE (EINVAL), unlike openat, which ignores it.
  how.mode = (flags & O_CREAT) || (flags & __O_TMPFILE) == __O_TMPFILE ? (mode & 07777) : 0;
  how.resolve = resolve;
  return res(env, NOINTR(syscall(SYS_openat2, dirfd, name.buf, &how, sizeof how)));
}

Napi::Value NativeAddon::OpenProcFd(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int32_t dir, fd;
  uint32_t flags;
  ARGS_OR_THROW(argI32(info, 0, dir) && argI32(info, 1, fd) && argU32(info, 2, flags));
  char buf[16];
  snprintf(buf, sizeof buf, "%d", fd);
  // /proc/self/fd/N is a magic link: it must be followed, so O_NOFOLLOW (which would give ELOOP) and
  // O_CREAT (meaningless on an existing inode) are dropped.
  flags &= ~static_cast<uint32_t>(O_NOFOLLOW | O_CREAT | O_EXCL);
  return res(env, NOINTR(openat(dir, buf, static_cast<int>(flags | O_CLOEXEC))));
}

Napi::Value NativeAddon::StatAt(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int32_t dirfd, flags;
  Name name;
  uint8_t* out;
  size_t outLen;
  ARGS_OR_THROW(argI32(info, 0, dirfd) && argName(info, 1, name, kNameMax, true) && argI32(info, 2, flags) &&
                argBytes(info, 3, out, outLen));
  NAME_OR_ERR(name);
  if (outLen < 96) {
    typeError(env, "statAt out buffer must hold 96 bytes");
    return Napi::Value();
  }
  if (name.isNull) flags |= AT_EMPTY_PATH;
  struct stat st;
  if (fstatat(dirfd, name.buf, &st, flags) < 0) return num(env, -errno);
  // struct fuse_attr (linux/fuse.h), then u64 st_dev.
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
  return num(env, 0);
}

Napi::Value NativeAddon::Mkdirat(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int32_t dirfd;
  Name name;
  uint32_t mode;
  ARGS_OR_THROW(argI32(info, 0, dirfd) && argName(info, 1, name, kNameMax, false) && argU32(info, 2, mode));
  NAME_OR_ERR(name);
  return res(env, mkdirat(dirfd, name.buf, mode));
}

Napi::Value NativeAddon::Mknodat(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int32_t dirfd;
  Name name;
  uint32_t mode, rdev;
  ARGS_OR_THROW(argI32(info, 0, dirfd) && argName(info, 1, name, kNameMax, false) && argU32(info, 2, mode) &&
                argU32(info, 3, rdev));
  NAME_OR_ERR(name);
  // rdev arrives new_encode_dev'd from FUSE; decode it into glibc's dev_t.
  dev_t d = makedev((rdev & 0xfff00) >> 8, (rdev & 0xff) | ((rdev >> 12) & 0xfff00));
  return res(env, mknodat(dirfd, name.buf, mode, d));
}

Napi::Value NativeAddon::Unlinkat(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int32_t dirfd, flags;
  Name name;
  ARGS_OR_THROW(argI32(info, 0, dirfd) && argName(info, 1, name, kNameMax, false) && argI32(info, 2, flags));
  NAME_OR_ERR(name);
  return res(env, unlinkat(dirfd, name.buf, flags));
}

Napi::Value NativeAddon::Renameat2(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int32_t od, nd;
  uint32_t flags;
  Name on, nn;
  ARGS_OR_THROW(argI32(info, 0, od) && argName(info, 1, on, kNameMax, false) && argI32(info, 2, nd) &&
                argName(info, 3, nn, kNameMax, false) && argU32(info, 4, flags));
  NAME_OR_ERR(on);
  NAME_OR_ERR(nn);
  return res(env, syscall(SYS_renameat2, od, on.buf, nd, nn.buf, flags));
}

Napi::Value NativeAddon::Linkat(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int32_t od, nd, flags;
  Name on, nn;
  ARGS_OR_THROW(argI32(info, 0, od) && argName(info, 1, on, kNameMax, true) && argI32(info, 2, nd) &&
                argName(info, 3, nn, kNameMax, false) && argI32(info, 4, flags));
  NAME_OR_ERR(on);
  NAME_OR_ERR(nn);
  if (!on.isNull) return res(env, linkat(od, on.buf, nd, nn.buf, flags));
  // AT_EMPTY_PATH needs CAP_DAC_READ_SEARCH (ENOENT without it); /proc/self/fd/N with AT_SYMLINK_FOLLOW
  // links the same inode without it.
  if (linkat(od, "", nd, nn.buf, flags | AT_EMPTY_PATH) == 0) return num(env, 0);
  if (errno != ENOENT) return num(env, -errno);
  char path[48];
  procFdPath(path, sizeof path, od);
  return res(env, linkat(AT_FDCWD, path, nd, nn.buf, AT_SYMLINK_FOLLOW));
}

Napi::Value NativeAddon::Symlinkat(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Name target, name;
  int32_t dirfd;
  ARGS_OR_THROW(argName(info, 0, target, kPathMax, false) && argI32(info, 1, dirfd) &&
                argName(info, 2, name, kNameMax, false));
  NAME_OR_ERR(target);
  NAME_OR_ERR(name);
  return res(env, symlinkat(target.buf, dirfd, name.buf));
}

Napi::Value NativeAddon::Readlinkat(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int32_t dirfd;
  Name name;
  uint8_t* out;
  size_t outLen;
  ARGS_OR_THROW(argI32(info, 0, dirfd) && argName(info, 1, name, kNameMax, true) && argBytes(info, 2, out, outLen));
  NAME_OR_ERR(name);
  // name null: readlinkat(fd, "") reads the symlink an O_PATH|O_NOFOLLOW fd refers to.
  return res(env, readlinkat(dirfd, name.buf, reinterpret_cast<char*>(out), outLen));
}

Napi::Value NativeAddon::Fchmodat(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int32_t dirfd;
  Name name;
  uint32_t mode;
  ARGS_OR_THROW(argI32(info, 0, dirfd) && argName(info, 1, name, kNameMax, true) && argU32(info, 2, mode));
  NAME_OR_ERR(name);
  if (name.isNull) {
    // fchmodat has no AT_EMPTY_PATH (before fchmodat2, Linux 6.6), and fchmod fails on O_PATH fds.
    char path[48];
    procFdPath(path, sizeof path, dirfd);
    return res(env, fchmodat(AT_FDCWD, path, mode, 0));
  }
  return res(env, fchmodat(dirfd, name.buf, mode, 0));
}

Napi::Value NativeAddon::Fchownat(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int32_t dirfd, flags;
  Name name;
  uint32_t uid, gid;
  ARGS_OR_THROW(argI32(info, 0, dirfd) && argName(info, 1, name, kNameMax, true) && argU32(info, 2, uid) &&
                argU32(info, 3, gid) && argI32(info, 4, flags));
  NAME_OR_ERR(name);
  if (name.isNull) flags |= AT_EMPTY_PATH;
  return res(env, fchownat(dirfd, name.buf, uid, gid, flags));
}

Napi::Value NativeAddon::Utimensat(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int32_t dirfd, flags;
  Name name;
  int64_t as, an, ms, mn;
  ARGS_OR_THROW(argI32(info, 0, dirfd) && argName(info, 1, name, kNameMax, true) && argI64(info, 2, as) &&
                argI64(info, 3, an) && argI64(info, 4, ms) && argI64(info, 5, mn) && argI32(info, 6, flags));
  NAME_OR_ERR(name);
  struct timespec ts[2];
  ts[0].tv_sec = as;
  ts[0].tv_nsec = an;
  ts[1].tv_sec = ms;
  ts[1].tv_nsec = mn;
  if (name.isNull) {
    char path[48];
    procFdPath(path, sizeof path, dirfd);
    return res(env, utimensat(AT_FDCWD, path, ts, 0));
  }
  return res(env, utimensat(dirfd, name.buf, ts, flags));
}

Napi::Value NativeAddon::Faccessat(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int32_t dirfd, mode, flags;
  Name name;
  ARGS_OR_THROW(argI32(info, 0, dirfd) && argName(info, 1, name, kNameMax, true) && argI32(info, 2, mode) &&
                argI32(info, 3, flags));
  NAME_OR_ERR(name);
  if (name.isNull) flags |= AT_EMPTY_PATH;
  // The raw faccessat2 (Linux 5.8): honours flags exactly instead of glibc's emulation.
  return res(env, syscall(SYS_faccessat2, dirfd, name.buf, mode, flags));
}

}  // namespace virtiofsd
