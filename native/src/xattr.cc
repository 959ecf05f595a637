// Extended attributes, on a real (not O_PATH) fd: the caller reopens the inode through /proc/self/fd.

#include "addon.h"

#include <sys/xattr.h>

namespace virtiofsd {

namespace {

// An xattr name: 1..255 bytes (XATTR_NAME_MAX) without NUL. Empty or longer is -ERANGE, as the xattr
// syscalls answer (not -ENAMETOOLONG); an embedded NUL is -EINVAL like every other name here.
bool argXattrName(const Napi::CallbackInfo& info, size_t i, Name& n) {
  if (!argName(info, i, n, kNameMax, false)) return false;
  if (n.err == -ENAMETOOLONG || (n.err == 0 && n.buf[0] == 0)) n.err = -ERANGE;
  return true;
}

// An output buffer, or null/undefined/empty for "the size only" (the syscall's size 0).
bool argOutOrNull(const Napi::CallbackInfo& info, size_t i, uint8_t*& data, size_t& len) {
  if (i < info.Length() && (info[i].IsNull() || info[i].IsUndefined())) {
    data = nullptr;
    len = 0;
    return true;
  }
  if (!argBytes(info, i, data, len)) return false;
  if (len == 0) data = nullptr;
  return true;
}

}  // namespace

Napi::Value NativeAddon::Fgetxattr(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int32_t fd;
  Name name;
  uint8_t* out;
  size_t outLen;
  ARGS_OR_THROW(argI32(info, 0, fd) && argXattrName(info, 1, name) && argOutOrNull(info, 2, out, outLen));
  NAME_OR_ERR(name);
  return res(env, NOINTR(fgetxattr(fd, name.buf, out, outLen)));
}

Napi::Value NativeAddon::Fsetxattr(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int32_t fd, flags;
  Name name;
  uint8_t* value;
  size_t valueLen;
  ARGS_OR_THROW(argI32(info, 0, fd) && argXattrName(info, 1, name) && argBytes(info, 2, value, valueLen) &&
                argI32(info, 3, flags));
  NAME_OR_ERR(name);
  return res(env, NOINTR(fsetxattr(fd, name.buf, valueLen ? value : nullptr, valueLen, flags)));
}

Napi::Value NativeAddon::Flistxattr(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int32_t fd;
  uint8_t* out;
  size_t outLen;
  ARGS_OR_THROW(argI32(info, 0, fd) && argOutOrNull(info, 1, out, outLen));
  return res(env, NOINTR(flistxattr(fd, reinterpret_cast<char*>(out), outLen)));
}

Napi::Value NativeAddon::Fremovexattr(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int32_t fd;
  Name name;
  ARGS_OR_THROW(argI32(info, 0, fd) && argXattrName(info, 1, name));
  NAME_OR_ERR(name);
  return res(env, NOINTR(fremovexattr(fd, name.buf)));
}

}  // namespace virtiofsd
