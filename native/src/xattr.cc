// Extended attributes, on a real (not O_PATH) fd: the caller reopens the inode through /proc/self/fd.
// setxattrProc alone works on an O_PATH fd of any file type (a new node's security context).

#include "addon.h"

#include <fcntl.h>
#include <stdio.h>
#include <sys/syscall.h>
#include <sys/xattr.h>
#include <unistd.h>

#ifndef SYS_setxattrat
#define SYS_setxattrat 463  // Linux 6.13; the same number on x86_64 and aarch64 (the generic table)
#endif

namespace virtiofsd {

namespace {

// An xattr name: 1..255 bytes (XATTR_NAME_MAX) without NUL. Empty or longer is -ERANGE, as the xattr
// syscalls answer (not -ENAMETOOLONG); an embedded NUL is -EINVAL like every other name here.
struct XattrName : Name {
  XattrName() {}  // user-provided, as Name's: value-initializing must not zero the buffer
};

bool arg(const Napi::CallbackInfo& info, size_t& i, XattrName& n) {
  if (!arg(info, i, static_cast<Name&>(n))) return false;
  if (n.err == -ENAMETOOLONG || (n.err == 0 && n.buf[0] == 0)) n.err = -ERANGE;
  return true;
}

// An output buffer, or null/undefined/empty for "the size only" (the syscall's size 0).
struct OutOrNull : Bytes {};

bool arg(const Napi::CallbackInfo& info, size_t& i, OutOrNull& out) {
  if (i < info.Length() && (info[i].IsNull() || info[i].IsUndefined())) {
    i++;
    return true;
  }
  if (!arg(info, i, static_cast<Bytes&>(out))) return false;
  if (out.len == 0) out.data = nullptr;
  return true;
}

// struct xattr_args (linux/xattr.h, 6.13): what setxattrat takes instead of value, size and flags.
struct XattrArgs {
  uint64_t value;
  uint32_t size;
  uint32_t flags;
};

}  // namespace

Napi::Value NativeAddon::Fgetxattr(const Napi::CallbackInfo& info) {
  return callWith(info, [](int32_t fd, const XattrName& name, OutOrNull out) {
    return NOINTR(fgetxattr(fd, name.buf, out.data, out.len));
  });
}

Napi::Value NativeAddon::Fsetxattr(const Napi::CallbackInfo& info) {
  return callWith(info, [](int32_t fd, const XattrName& name, Bytes value, int32_t flags) {
    return NOINTR(fsetxattr(fd, name.buf, value.len ? value.data : nullptr, value.len, flags));
  });
}

// setxattrProc(procFdDir, fd, name, value, flags): fsetxattr for an inode known only by an O_PATH fd,
// of any file type, without opening it (a FIFO or a device node must never be opened): setxattrat(2) on
// fd's magic link "N" under procFdDir (an fd of /proc/self/fd). The magic link resolves to the inode
// itself; a trailing magic link that lands on a symlink is not followed again, so a symlink gets the
// attribute itself. 0 or -errno; -ENOSYS before Linux 6.13.
Napi::Value NativeAddon::SetxattrProc(const Napi::CallbackInfo& info) {
  return callWith(info, [](int32_t dir, int32_t fd, const XattrName& name, Bytes value, int32_t flags) -> long {
    char path[16];
    snprintf(path, sizeof path, "%d", fd);
    XattrArgs a{reinterpret_cast<uint64_t>(value.len ? value.data : nullptr), static_cast<uint32_t>(value.len),
                static_cast<uint32_t>(flags)};
    return NOINTR(syscall(SYS_setxattrat, dir, path, 0, name.buf, &a, sizeof a));
  });
}

Napi::Value NativeAddon::Flistxattr(const Napi::CallbackInfo& info) {
  return callWith(info, [](int32_t fd, OutOrNull out) {
    return NOINTR(flistxattr(fd, reinterpret_cast<char*>(out.data), out.len));
  });
}

Napi::Value NativeAddon::Fremovexattr(const Napi::CallbackInfo& info) {
  return callWith(info, [](int32_t fd, const XattrName& name) { return NOINTR(fremovexattr(fd, name.buf)); });
}

}  // namespace virtiofsd
