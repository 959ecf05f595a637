// Calls on an open fd (close, dup, size, sync, seek, directory reads, pread/pwrite), and the zero-copy
// preadv/pwritev between a file and guest memory (segment lists in the shared linear memory).

#include "addon.h"

#include <fcntl.h>
#include <sys/statfs.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <unistd.h>

#include <vector>

namespace virtiofsd {

namespace {

constexpr uint32_t kIovMax = 1024;  // IOV_MAX

// Runs preadv/pwritev over a segment list {u64 off, u32 len, u32 region} at `list` in the window: each
// segment is `len` bytes at offset `off` of memory-table entry `region`, whose host mapping is at its
// MT_HVA (setWindow says where the table is). Every entry (and the list itself) is checked against the
// window and the table before any I/O. Loops over IOV_MAX-sized batches and short transfers; after partial
// progress an error returns the bytes done so far.
template <bool kWrite>
long vecIo(NativeAddon* a, int fd, uint64_t list, uint64_t count, uint64_t pos) {
  if (a->winBase == nullptr || a->table.stride == 0) return -EFAULT;
  const uint64_t wl = a->winLen;
  constexpr uint64_t kSeg = 16;
  if (count > wl / kSeg || list > wl || count * kSeg > wl - list) return -EFAULT;
  const uint8_t* l = a->winBase + list;
  const GuestTable& t = a->table;
  uint32_t regions;
  memcpy(&regions, a->winBase + t.base, 4);
  if (regions > t.max) return -EFAULT;
  // The list is in shared memory: read each entry once, check it, and use only the checked copy.
  // Common chains are short: no heap allocation below kStackIov segments.
  constexpr size_t kStackIov = 64;
  struct iovec stackIov[kStackIov];
  std::vector<struct iovec> heapIov;
  struct iovec* all = stackIov;
  if (count > kStackIov) {
    heapIov.resize(static_cast<size_t>(count));
    all = heapIov.data();
  }
  size_t total = 0;
  for (uint64_t i = 0; i < count; i++) {
    uint64_t off, size, hva;
    uint32_t len, region;
    memcpy(&off, l + i * kSeg, 8);
    memcpy(&len, l + i * kSeg + 8, 4);
    memcpy(&region, l + i * kSeg + 12, 4);
    if (region >= regions) return -EFAULT;
    const uint8_t* e = a->winBase + t.base + t.entries + static_cast<uint64_t>(region) * t.stride;
    memcpy(&size, e + t.sizeOff, 8);
    memcpy(&hva, e + t.hvaOff, 8);
    if (hva == 0 || off > size || len > size - off) return -EFAULT;
    if (len == 0) continue;
    all[total++] = {reinterpret_cast<void*>(static_cast<uintptr_t>(hva + off)), len};
  }
  long done = 0;
  size_t idx = 0;
  while (idx < total) {
    size_t n = total - idx;
    if (n > kIovMax) n = kIovMax;
    ssize_t r = kWrite ? pwritev(fd, &all[idx], static_cast<int>(n), static_cast<off_t>(pos))
                       : preadv(fd, &all[idx], static_cast<int>(n), static_cast<off_t>(pos));
    if (r < 0) {
      if (errno == EINTR) continue;
      return done > 0 ? done : -errno;
    }
    if (r == 0) break;
    done += r;
    pos += static_cast<uint64_t>(r);
    // Advance past fully transferred segments, trim a partially transferred one.
    size_t left = static_cast<size_t>(r);
    while (left > 0 && idx < total) {
      if (left >= all[idx].iov_len) {
        left -= all[idx].iov_len;
        idx++;
      } else {
        all[idx].iov_base = static_cast<uint8_t*>(all[idx].iov_base) + left;
        all[idx].iov_len -= left;
        left = 0;
      }
    }
  }
  return done;
}

// preadvWin/pwritevWin(fd, list, count, pos): vecIo over the segment list at `list` in the window.
template <bool kWrite>
Napi::Value windowIo(NativeAddon* a, const Napi::CallbackInfo& info) {
  int32_t fd;
  uint64_t list, count, pos;
  ARGS_OR_THROW(args(info, fd, list, count, pos));
  return num(info.Env(), static_cast<double>(vecIo<kWrite>(a, fd, list, count, pos)));
}

}  // namespace

Napi::Value NativeAddon::Close(const Napi::CallbackInfo& info) {
  // Never retry close on EINTR: on Linux the fd is gone either way.
  return callWith(info, [](int32_t fd) { return close(fd); });
}

Napi::Value NativeAddon::FcntlGetFl(const Napi::CallbackInfo& info) {
  return callWith(info, [](int32_t fd) { return fcntl(fd, F_GETFL); });
}

Napi::Value NativeAddon::Dup(const Napi::CallbackInfo& info) {
  return callWith(info, [](int32_t fd) { return fcntl(fd, F_DUPFD_CLOEXEC, 0); });
}

Napi::Value NativeAddon::Ftruncate(const Napi::CallbackInfo& info) {
  return callWith(info, [](int32_t fd, uint64_t len) { return NOINTR(ftruncate(fd, static_cast<off_t>(len))); });
}

Napi::Value NativeAddon::Fallocate(const Napi::CallbackInfo& info) {
  return callWith(info, [](int32_t fd, int32_t mode, uint64_t off, uint64_t len) {
    return NOINTR(fallocate(fd, mode, static_cast<off_t>(off), static_cast<off_t>(len)));
  });
}

// copy_file_range(2) with explicit offsets (the fds' own positions are untouched). Bytes or -errno.
Napi::Value NativeAddon::CopyFileRange(const Napi::CallbackInfo& info) {
  return callWith(info, [](int32_t fdIn, uint64_t offIn, int32_t fdOut, uint64_t offOut, uint64_t len, int32_t flags) {
    loff_t in = static_cast<loff_t>(offIn), out = static_cast<loff_t>(offOut);
    return NOINTR(copy_file_range(fdIn, &in, fdOut, &out, static_cast<size_t>(len), static_cast<unsigned>(flags)));
  });
}

Napi::Value NativeAddon::Fsync(const Napi::CallbackInfo& info) {
  return callWith(info, [](int32_t fd, Flag datasync) { return NOINTR(datasync.on ? fdatasync(fd) : fsync(fd)); });
}

// syncfs(2): commit the file system holding fd (not an O_PATH fd). 0 or -errno.
Napi::Value NativeAddon::Syncfs(const Napi::CallbackInfo& info) {
  return callWith(info, [](int32_t fd) { return NOINTR(syncfs(fd)); });
}

Napi::Value NativeAddon::Fstatfs(const Napi::CallbackInfo& info) {
  int32_t fd;
  Bytes outBuf;
  ARGS_OR_THROW(args(info, fd, outBuf));
  ARGS_OR_THROW(outHolds(info.Env(), outBuf, 80, "fstatfs out buffer must hold 80 bytes"));
  struct statfs s;
  if (NOINTR(fstatfs(fd, &s)) < 0) return num(info.Env(), -errno);
  // struct fuse_kstatfs (linux/fuse.h)
  uint8_t* out = outBuf.data;
  memset(out, 0, 80);
  put64(out, 0, s.f_blocks);
  put64(out, 8, s.f_bfree);
  put64(out, 16, s.f_bavail);
  put64(out, 24, s.f_files);
  put64(out, 32, s.f_ffree);
  put32(out, 40, static_cast<uint32_t>(s.f_bsize));
  put32(out, 44, static_cast<uint32_t>(s.f_namelen));
  put32(out, 48, static_cast<uint32_t>(s.f_frsize ? s.f_frsize : s.f_bsize));
  return num(info.Env(), 0);
}

Napi::Value NativeAddon::Getdents64(const Napi::CallbackInfo& info) {
  return callWith(info, [](int32_t fd, Bytes out) { return NOINTR(syscall(SYS_getdents64, fd, out.data, out.len)); });
}

// READDIR without a JS step per entry: getdents64 into a buffer here, each linux_dirent64 {u64 d_ino,
// s64 d_off, u16 d_reclen, u8 d_type, name NUL-terminated} rewritten as a struct fuse_dirent (linux/fuse.h:
// u64 ino, u64 off, u32 namelen, u32 type, name, zero padding to 8 bytes) into out[off, off+len). It
// reads at most 3/4 of `len` (a fuse_dirent, ALIGN(24+n, 8), is at most 4/3 of its linux_dirent64,
// ALIGN(20+n, 8) ≥ 24): every entry read fits, so the file position never runs past what was written.
// Bytes written, or -errno (0: the end of the directory, or `len` too small for any entry: the caller
// checks that). state (≥ 16 bytes) gets u32 entries at 0 and the last entry's d_off (u64) at 8.
Napi::Value NativeAddon::GetdentsFuse(const Napi::CallbackInfo& info) {
  int32_t fd;
  Slice out;
  Bytes state;
  ARGS_OR_THROW(args(info, fd, out, state));
  ARGS_OR_THROW(state.len >= 16 || typeError(info.Env(), "getdentsFuse state must hold 16 bytes"));
  alignas(8) uint8_t dents[32768];
  size_t want = (out.len / 4 * 3) & ~static_cast<size_t>(7);
  if (want > sizeof dents) want = sizeof dents;
  put32(state.data, 0, 0);
  if (want < 24) return num(info.Env(), 0);
  long n = NOINTR(syscall(SYS_getdents64, fd, dents, want));
  if (n < 0) return num(info.Env(), -errno);
  size_t w = 0;
  uint32_t count = 0;
  uint64_t last = 0;
  for (long p = 0; p < n;) {
    uint64_t ino, off;
    uint16_t reclen;
    memcpy(&ino, dents + p, 8);
    memcpy(&off, dents + p + 8, 8);
    memcpy(&reclen, dents + p + 16, 2);
    if (reclen < 20 || p + reclen > n) break;  // the kernel's records are well formed; stop if not
    uint8_t type = dents[p + 18];
    const uint8_t* name = dents + p + 19;
    size_t namelen = strnlen(reinterpret_cast<const char*>(name), reclen - 19);
    size_t rec = (24 + namelen + 7) & ~static_cast<size_t>(7);
    if (w + rec > out.len) {
      // Cannot happen (see above). Were it to, put the position back after the last entry written.
      if (count == 0 || lseek(fd, static_cast<off_t>(last), SEEK_SET) < 0) return num(info.Env(), -EIO);
      break;
    }
    uint8_t* d = out.data + w;
    put64(d, 0, ino);
    put64(d, 8, off);
    put32(d, 16, static_cast<uint32_t>(namelen));
    put32(d, 20, type);
    memcpy(d + 24, name, namelen);
    memset(d + 24 + namelen, 0, rec - 24 - namelen);
    w += rec;
    count++;
    last = off;
    p += reclen;
  }
  put32(state.data, 0, count);
  put64(state.data, 8, last);
  return num(info.Env(), static_cast<double>(w));
}

Napi::Value NativeAddon::Lseek(const Napi::CallbackInfo& info) {
  return callWith(info, [](int32_t fd, int64_t off, int32_t whence) {
    return lseek(fd, static_cast<off_t>(off), whence);
  });
}

// Directory offsets (ext4 hashes) use all 63 bits: a JS number cannot hold them, so this variant takes
// and returns a BigInt (negative = -errno).
Napi::Value NativeAddon::LseekBig(const Napi::CallbackInfo& info) {
  int32_t fd, whence;
  ARGS_OR_THROW(args(info, fd));
  if (info.Length() < 3 || !info[1].IsBigInt() || !info[2].IsNumber()) {
    Napi::TypeError::New(info.Env(), "expected (fd, bigint, whence)").ThrowAsJavaScriptException();
    return info.Env().Undefined();
  }
  bool lossless = false;
  int64_t off = info[1].As<Napi::BigInt>().Int64Value(&lossless);
  whence = info[2].As<Napi::Number>().Int32Value();
  if (!lossless) return Napi::BigInt::New(info.Env(), static_cast<int64_t>(-EINVAL));
  off_t r = lseek(fd, static_cast<off_t>(off), whence);
  if (r < 0) return Napi::BigInt::New(info.Env(), static_cast<int64_t>(-errno));
  return Napi::BigInt::New(info.Env(), static_cast<int64_t>(r));
}

Napi::Value NativeAddon::Pread(const Napi::CallbackInfo& info) {
  return callWith(info, [](int32_t fd, Slice buf, uint64_t pos) {
    return NOINTR(pread(fd, buf.data, buf.len, static_cast<off_t>(pos)));
  });
}

Napi::Value NativeAddon::Pwrite(const Napi::CallbackInfo& info) {
  return callWith(info, [](int32_t fd, Slice buf, uint64_t pos) {
    return NOINTR(pwrite(fd, buf.data, buf.len, static_cast<off_t>(pos)));
  });
}

// ---------------------------------------------------------------------------------------------------
// Zero copy against the shared linear memory.

Napi::Value NativeAddon::SetWindow(const Napi::CallbackInfo& info) {
  Bytes win;
  GuestTable t;
  ARGS_OR_THROW(args(info, win, t.base, t.entries, t.stride, t.max, t.sizeOff, t.hvaOff));
  // The whole table, and each field read from an entry, must lie in the window.
  if (t.stride < 16 || t.sizeOff > t.stride - 8 || t.hvaOff > t.stride - 8 || t.base > win.len ||
      t.entries + t.max * t.stride > win.len - t.base) {
    Napi::RangeError::New(info.Env(), "memory table does not fit the window").ThrowAsJavaScriptException();
    return info.Env().Undefined();
  }
  winRef.Reset(info[0], 1);
  winBase = win.data;
  winLen = win.len;
  table = t;
  return info.Env().Undefined();
}

Napi::Value NativeAddon::PreadvWin(const Napi::CallbackInfo& info) { return windowIo<false>(this, info); }

Napi::Value NativeAddon::PwritevWin(const Napi::CallbackInfo& info) { return windowIo<true>(this, info); }

}  // namespace virtiofsd
