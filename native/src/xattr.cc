// Extended attributes, on a real (not O_PATH) fd: the caller reopens the inode through /proc/self/fd.

#include "addon.h"

#include <sys/xattr.h>

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

Napi::Value NativeAddon::Flistxattr(const Napi::CallbackInfo& info) {
  return callWith(info, [](int32_t fd, OutOrNull out) {
    return NOINTR(flistxattr(fd, reinterpret_cast<char*>(out.data), out.len));
  });
}

Napi::Value NativeAddon::Fremovexattr(const Napi::CallbackInfo& info) {
  return callWith(info, [](int32_t fd, const XattrName& name) { return NOINTR(fremovexattr(fd, name.buf)); });
}

}  // namespace virtiofsd
