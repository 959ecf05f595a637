/*
 * fsprobe: a guest-side functional probe of a virtio-fs mount.
 *
 * Built on the host with `gcc -static -O2` by test/e2e/functional.test.ts and run in the guest as
 * `fsprobe DIR` (DIR on the virtiofs mount; it is created and must not exist yet). Every check is
 * independent and runs in its own child process (with an alarm), so a crash, hang or failure in one
 * check never stops the others. Each prints one line
 *     @@STEP name ok@@            or    @@STEP name FAIL detail@@
 * (the format of parseSteps in test/e2e/harness.ts). Files named hc-* are left in DIR for the host to
 * verify (see functional.test.ts). Exit status: the number of failed checks (capped at 125).
 * `fsprobe --do OP ARGS` runs one operation instead (see do_cmd below; test/e2e/ids-xattrs.test.ts).
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <linux/falloc.h>
#include <linux/magic.h>
#include <sched.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <sys/types.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <sys/xattr.h>
#include <time.h>
#include <unistd.h>

#ifndef FUSE_SUPER_MAGIC
#define FUSE_SUPER_MAGIC 0x65735546
#endif
#ifndef RENAME_NOREPLACE
#define RENAME_NOREPLACE (1 << 0)
#endif
#ifndef RENAME_EXCHANGE
#define RENAME_EXCHANGE (1 << 1)
#endif

#define GIB (1024LL * 1024 * 1024)
#define USER_ID 1000

static const char *base;   /* DIR */
static char *detail;       /* shared with the parent (MAP_SHARED|MAP_ANONYMOUS) */
#define DETAIL_SIZE 480

/* ---- helpers ------------------------------------------------------------------------------ */

static int fail(const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(detail, DETAIL_SIZE, fmt, ap);
  va_end(ap);
  return 1;
}

#define CHECK(cond, ...) do { if (!(cond)) return fail(__VA_ARGS__); } while (0)
/* a syscall that must succeed */
#define OK(expr) do { if ((long)(expr) < 0) return fail("%s: %s (line %d)", #expr, strerror(errno), __LINE__); } while (0)
/* a syscall that must fail with errno e (or e2) */
#define ERRNO2(expr, e, e2) do { errno = 0; long _r = (long)(expr); \
    if (_r >= 0) return fail("%s succeeded (%ld), expected %s", #expr, _r, strerror(e)); \
    if (errno != (e) && errno != (e2)) return fail("%s: got %s, expected %s", #expr, strerror(errno), strerror(e)); \
  } while (0)
#define ERRNO(expr, e) ERRNO2(expr, e, e)

static char pbuf[8][4200];
static int pidx;
/* DIR/name (a few rotating buffers) */
static const char *P(const char *fmt, ...) {
  char *b = pbuf[pidx++ & 7];
  int n = snprintf(b, 4200, "%s/", base);
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(b + n, 4200 - n, fmt, ap);
  va_end(ap);
  return b;
}

static int write_file(const char *path, const void *data, size_t len, mode_t mode) {
  int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, mode);
  if (fd < 0) return -1;
  const char *p = data;
  while (len > 0) {
    ssize_t n = write(fd, p, len);
    if (n <= 0) { close(fd); return -1; }
    p += n;
    len -= (size_t)n;
  }
  return close(fd);
}

/* whole file into buf (up to cap); length or -1 */
static ssize_t read_file(const char *path, void *buf, size_t cap) {
  int fd = open(path, O_RDONLY);
  if (fd < 0) return -1;
  size_t got = 0;
  for (;;) {
    ssize_t n = read(fd, (char *)buf + got, cap - got);
    if (n < 0) { close(fd); return -1; }
    if (n == 0) break;
    got += (size_t)n;
    if (got == cap) break;
  }
  close(fd);
  return (ssize_t)got;
}

static int file_is(const char *path, const char *want) {
  char buf[4096];
  ssize_t n = read_file(path, buf, sizeof buf);
  return n == (ssize_t)strlen(want) && memcmp(buf, want, (size_t)n) == 0;
}

static int pread_all(int fd, void *buf, size_t len, off_t off) {
  size_t got = 0;
  while (got < len) {
    ssize_t n = pread(fd, (char *)buf + got, len - got, off + (off_t)got);
    if (n <= 0) return -1;
    got += (size_t)n;
  }
  return 0;
}

static int pwrite_all(int fd, const void *buf, size_t len, off_t off) {
  size_t got = 0;
  while (got < len) {
    ssize_t n = pwrite(fd, (const char *)buf + got, len - got, off + (off_t)got);
    if (n <= 0) return -1;
    got += (size_t)n;
  }
  return 0;
}

static unsigned char pat(size_t i) { return (unsigned char)((i * 7 + 3) & 0xff); }

/* run f in a child that switched to uid/gid USER_ID; the child's return value (0 ok) */
static int as_user(int (*f)(void)) {
  pid_t pid = fork();
  if (pid < 0) return fail("fork: %s", strerror(errno));
  if (pid == 0) {
    gid_t g = USER_ID;
    if (setgroups(1, &g) < 0 || setresgid(USER_ID, USER_ID, USER_ID) < 0 || setresuid(USER_ID, USER_ID, USER_ID) < 0) {
      fail("dropping privileges: %s", strerror(errno));
      _exit(1);
    }
    _exit(f() ? 1 : 0);
  }
  int st;
  if (waitpid(pid, &st, 0) < 0) return fail("waitpid: %s", strerror(errno));
  if (!WIFEXITED(st)) return fail("user child died with signal %d", WTERMSIG(st));
  return WEXITSTATUS(st);
}

/* ---- open flags --------------------------------------------------------------------------- */

static int t_open_excl(void) {
  OK(write_file(P("excl"), "x", 1, 0644));
  ERRNO(open(P("excl"), O_WRONLY | O_CREAT | O_EXCL, 0644), EEXIST);
  int fd;
  OK(fd = open(P("excl-new"), O_WRONLY | O_CREAT | O_EXCL, 0640));
  struct stat st;
  OK(fstat(fd, &st));
  close(fd);
  CHECK(S_ISREG(st.st_mode) && (st.st_mode & 07777) == 0640, "new file mode %o", st.st_mode);
  /* O_CREAT without O_EXCL opens the existing file and does not truncate it */
  OK(fd = open(P("excl"), O_WRONLY | O_CREAT, 0600));
  close(fd);
  CHECK(file_is(P("excl"), "x"), "O_CREAT without O_EXCL changed the file");
  return 0;
}

static int t_open_trunc(void) {
  OK(write_file(P("trunc"), "hello world", 11, 0644));
  int fd;
  OK(fd = open(P("trunc"), O_WRONLY | O_TRUNC));
  struct stat st;
  OK(fstat(fd, &st));
  CHECK(st.st_size == 0, "fstat size after O_TRUNC %lld", (long long)st.st_size);
  OK(write(fd, "ab", 2));
  close(fd);
  OK(stat(P("trunc"), &st));
  CHECK(st.st_size == 2 && file_is(P("trunc"), "ab"), "size %lld after O_TRUNC+write", (long long)st.st_size);
  return 0;
}

static int t_open_append(void) {
  OK(write_file(P("append"), "abc", 3, 0644));
  int fd;
  OK(fd = open(P("append"), O_WRONLY | O_APPEND));
  OK(lseek(fd, 0, SEEK_SET));
  OK(write(fd, "def", 3));
  OK(lseek(fd, 1, SEEK_SET));
  OK(write(fd, "gh", 2));
  off_t pos = lseek(fd, 0, SEEK_CUR);
  close(fd);
  CHECK(pos == 8, "position after append %lld", (long long)pos);
  CHECK(file_is(P("append"), "abcdefgh"), "O_APPEND writes did not land at the end");
  /* appends through two descriptors interleave at the end */
  int a, b;
  OK(a = open(P("append"), O_WRONLY | O_APPEND));
  OK(b = open(P("append"), O_WRONLY | O_APPEND));
  OK(write(a, "1", 1));
  OK(write(b, "2", 1));
  OK(write(a, "3", 1));
  close(a);
  close(b);
  CHECK(file_is(P("append"), "abcdefgh123"), "two O_APPEND fds clobbered each other");
  return 0;
}

static int t_open_directory_on_file(void) {
  OK(write_file(P("notdir"), "x", 1, 0644));
  ERRNO(open(P("notdir"), O_RDONLY | O_DIRECTORY), ENOTDIR);
  ERRNO(open(P("notdir/x"), O_RDONLY), ENOTDIR);
  return 0;
}

static int t_open_nofollow(void) {
  OK(write_file(P("nf-target"), "x", 1, 0644));
  OK(symlink("nf-target", P("nf-link")));
  ERRNO(open(P("nf-link"), O_RDONLY | O_NOFOLLOW), ELOOP);
  int fd;
  OK(fd = open(P("nf-link"), O_RDONLY));
  close(fd);
  OK(fd = open(P("nf-link"), O_PATH | O_NOFOLLOW));
  struct stat st;
  OK(fstatat(fd, "", &st, AT_EMPTY_PATH));
  close(fd);
  CHECK(S_ISLNK(st.st_mode), "O_PATH|O_NOFOLLOW fd is not the link");
  return 0;
}

static int t_open_errors(void) {
  OK(mkdir(P("od"), 0755));
  ERRNO(open(P("od"), O_WRONLY), EISDIR);
  ERRNO(open(P("od"), O_RDWR | O_CREAT, 0644), EISDIR);
  ERRNO(open(P("missing"), O_RDONLY), ENOENT);
  ERRNO(open(P("missing-dir/x"), O_RDONLY | O_CREAT, 0644), ENOENT);
  return 0;
}

static int t_o_direct(void) {
  void *buf;
  CHECK(posix_memalign(&buf, 4096, 65536) == 0, "posix_memalign");
  for (size_t i = 0; i < 65536; i++) ((unsigned char *)buf)[i] = pat(i);
  int fd;
  OK(fd = open(P("direct"), O_RDWR | O_CREAT | O_DIRECT, 0644));
  CHECK(pwrite(fd, buf, 65536, 4096) == 65536, "O_DIRECT pwrite: %s", strerror(errno));
  memset(buf, 0, 65536);
  CHECK(pread(fd, buf, 65536, 4096) == 65536, "O_DIRECT pread: %s", strerror(errno));
  close(fd);
  for (size_t i = 0; i < 65536; i++) CHECK(((unsigned char *)buf)[i] == pat(i), "O_DIRECT data differs at %zu", i);
  free(buf);
  return 0;
}

/* ---- data --------------------------------------------------------------------------------- */

static int t_pread_pwrite(void) {
  int fd;
  OK(fd = open(P("rw"), O_RDWR | O_CREAT | O_TRUNC, 0644));
  static const off_t offs[] = {0, 4095, 65537, 1 << 20, (3 << 20) + 17};
  char w[100], r[100];
  for (int k = 0; k < 5; k++) {
    for (int i = 0; i < 100; i++) w[i] = (char)(k * 31 + i);
    CHECK(pwrite(fd, w, 100, offs[k]) == 100, "pwrite at %lld: %s", (long long)offs[k], strerror(errno));
  }
  for (int k = 0; k < 5; k++) {
    for (int i = 0; i < 100; i++) w[i] = (char)(k * 31 + i);
    CHECK(pread(fd, r, 100, offs[k]) == 100, "pread at %lld", (long long)offs[k]);
    CHECK(memcmp(w, r, 100) == 0, "data at %lld differs", (long long)offs[k]);
  }
  /* the untouched gap reads as zeros */
  CHECK(pread(fd, r, 100, 200000) == 100, "pread gap");
  for (int i = 0; i < 100; i++) CHECK(r[i] == 0, "gap not zero");
  /* a big write crossing many pages and the max write size, read back through another fd */
  size_t big = (5 << 20) + 333;
  unsigned char *b = malloc(big), *c = malloc(big);
  for (size_t i = 0; i < big; i++) b[i] = pat(i);
  CHECK(pwrite_all(fd, b, big, 12345) == 0, "big pwrite: %s", strerror(errno));
  int fd2;
  OK(fd2 = open(P("rw"), O_RDONLY));
  CHECK(pread_all(fd2, c, big, 12345) == 0, "big pread: %s", strerror(errno));
  CHECK(memcmp(b, c, big) == 0, "big data differs");
  close(fd2);
  close(fd);
  free(b);
  free(c);
  return 0;
}

static int t_pwrite_beyond_4g(void) {
  int fd;
  OK(fd = open(P("huge"), O_RDWR | O_CREAT | O_TRUNC, 0644));
  const off_t off = 5 * GIB + 123;
  const char msg[] = "data beyond 4 GiB";
  CHECK(pwrite(fd, msg, sizeof msg, off) == (ssize_t)sizeof msg, "pwrite at 5 GiB: %s", strerror(errno));
  struct stat st;
  OK(fstat(fd, &st));
  CHECK(st.st_size == off + (off_t)sizeof msg, "size %lld", (long long)st.st_size);
  char r[64] = {0};
  CHECK(pread(fd, r, sizeof msg, off) == (ssize_t)sizeof msg && memcmp(r, msg, sizeof msg) == 0, "pread at 5 GiB");
  CHECK(pread(fd, r, 16, 4 * GIB) == 16, "pread in the hole at 4 GiB");
  for (int i = 0; i < 16; i++) CHECK(r[i] == 0, "hole not zero");
  close(fd);
  OK(stat(P("huge"), &st));
  CHECK(st.st_blocks < 2048, "not sparse: %lld blocks", (long long)st.st_blocks);
  return 0;
}

static int t_read_past_eof(void) {
  OK(write_file(P("eof"), "0123456789", 10, 0644));
  int fd;
  OK(fd = open(P("eof"), O_RDONLY));
  char buf[64];
  CHECK(pread(fd, buf, 64, 100) == 0, "pread past EOF not 0");
  CHECK(pread(fd, buf, 64, 10) == 0, "pread at EOF not 0");
  CHECK(pread(fd, buf, 64, 5) == 5, "short read at the end not 5");
  CHECK(read(fd, buf, 64) == 10, "read not 10");
  CHECK(read(fd, buf, 64) == 0, "read at EOF not 0");
  close(fd);
  return 0;
}

static int t_ftruncate(void) {
  int fd;
  OK(fd = open(P("ftr"), O_RDWR | O_CREAT | O_TRUNC, 0644));
  char a[100];
  memset(a, 'a', 100);
  OK(write(fd, a, 100));
  OK(ftruncate(fd, 10000));
  struct stat st;
  OK(fstat(fd, &st));
  CHECK(st.st_size == 10000, "size after grow %lld", (long long)st.st_size);
  char buf[10000];
  CHECK(pread_all(fd, buf, 10000, 0) == 0, "read after grow");
  for (int i = 0; i < 10000; i++) CHECK(buf[i] == (i < 100 ? 'a' : 0), "byte %d after grow is %d", i, buf[i]);
  OK(ftruncate(fd, 50));
  OK(fstat(fd, &st));
  CHECK(st.st_size == 50, "size after shrink %lld", (long long)st.st_size);
  CHECK(pread(fd, buf, 100, 0) == 50, "read after shrink");
  OK(ftruncate(fd, 60));
  CHECK(pread(fd, buf, 100, 0) == 60 && buf[55] == 0, "shrink then grow left stale data");
  close(fd);
  /* truncate by path */
  OK(truncate(P("ftr"), 7));
  OK(stat(P("ftr"), &st));
  CHECK(st.st_size == 7, "truncate(path) size %lld", (long long)st.st_size);
  /* a read-only fd cannot truncate */
  OK(fd = open(P("ftr"), O_RDONLY));
  ERRNO2(ftruncate(fd, 0), EINVAL, EBADF);
  close(fd);
  return 0;
}

static int t_fallocate(void) {
  int fd;
  OK(fd = open(P("falloc"), O_RDWR | O_CREAT | O_TRUNC, 0644));
  OK(fallocate(fd, 0, 0, 1 << 20));
  struct stat st;
  OK(fstat(fd, &st));
  CHECK(st.st_size == 1 << 20, "size after fallocate %lld", (long long)st.st_size);
  OK(stat(P("falloc"), &st));
  CHECK(st.st_blocks >= 2048, "blocks after fallocate %lld", (long long)st.st_blocks);
  /* KEEP_SIZE beyond the end */
  OK(fallocate(fd, FALLOC_FL_KEEP_SIZE, 1 << 20, 1 << 20));
  OK(fstat(fd, &st));
  CHECK(st.st_size == 1 << 20, "KEEP_SIZE changed the size to %lld", (long long)st.st_size);
  close(fd);
  return 0;
}

static int t_punch_hole(void) {
  int fd;
  OK(fd = open(P("punch"), O_RDWR | O_CREAT | O_TRUNC, 0644));
  size_t n = 1 << 20;
  unsigned char *b = malloc(n);
  memset(b, 0xaa, n);
  CHECK(pwrite_all(fd, b, n, 0) == 0, "write");
  OK(fsync(fd));
  OK(fallocate(fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, 256 << 10, 256 << 10));
  struct stat st;
  OK(fstat(fd, &st));
  CHECK(st.st_size == (off_t)n, "size after punch %lld", (long long)st.st_size);
  CHECK(pread_all(fd, b, n, 0) == 0, "read");
  for (size_t i = 0; i < n; i++) {
    unsigned char want = (i >= (256 << 10) && i < (512 << 10)) ? 0 : 0xaa;
    CHECK(b[i] == want, "byte %zu is %02x after punch", i, b[i]);
  }
  close(fd);
  free(b);
  OK(stat(P("punch"), &st));
  CHECK(st.st_blocks <= 1536 + 16, "punched file still has %lld blocks", (long long)st.st_blocks);
  return 0;
}

static int t_seek_data_hole(void) {
  int fd;
  OK(fd = open(P("sparse"), O_RDWR | O_CREAT | O_TRUNC, 0644));
  char d[4096];
  memset(d, 'd', sizeof d);
  OK(pwrite(fd, d, 4096, 0));
  OK(pwrite(fd, d, 4096, 1 << 20));
  OK(ftruncate(fd, 2 << 20));
  OK(fsync(fd));
  off_t o;
  CHECK((o = lseek(fd, 0, SEEK_DATA)) == 0, "SEEK_DATA 0 -> %lld (%s)", (long long)o, strerror(errno));
  o = lseek(fd, 0, SEEK_HOLE);
  CHECK(o >= 4096 && o <= (1 << 20) - 4096, "SEEK_HOLE 0 -> %lld (%s)", (long long)o, strerror(errno));
  CHECK((o = lseek(fd, 8192, SEEK_DATA)) == 1 << 20, "SEEK_DATA 8192 -> %lld (%s)", (long long)o, strerror(errno));
  o = lseek(fd, 1 << 20, SEEK_HOLE);
  CHECK(o >= (1 << 20) + 4096 && o <= 2 << 20, "SEEK_HOLE 1M -> %lld (%s)", (long long)o, strerror(errno));
  ERRNO(lseek(fd, (1 << 20) + 8192, SEEK_DATA), ENXIO);
  ERRNO(lseek(fd, 3 << 20, SEEK_HOLE), ENXIO);
  CHECK((o = lseek(fd, -10, SEEK_END)) == (2 << 20) - 10, "SEEK_END -> %lld", (long long)o);
  close(fd);
  return 0;
}

static int t_fsync(void) {
  int fd;
  OK(fd = open(P("sync"), O_RDWR | O_CREAT | O_TRUNC, 0644));
  OK(write(fd, "sync me", 7));
  OK(fsync(fd));
  OK(write(fd, "!", 1));
  OK(fdatasync(fd));
  close(fd);
  int dfd;
  OK(dfd = open(base, O_RDONLY | O_DIRECTORY));
  OK(fsync(dfd));
  close(dfd);
  OK(fd = open(P("sync-dsync"), O_WRONLY | O_CREAT | O_TRUNC | O_DSYNC, 0644));
  OK(write(fd, "dsync", 5));
  close(fd);
  OK(fd = open(P("sync-sync"), O_WRONLY | O_CREAT | O_TRUNC | O_SYNC, 0644));
  OK(write(fd, "osync", 5));
  close(fd);
  CHECK(file_is(P("sync"), "sync me!") && file_is(P("sync-dsync"), "dsync") && file_is(P("sync-sync"), "osync"),
        "contents");
  return 0;
}

static int t_write_other_fd_coherent(void) {
  OK(write_file(P("coh"), "old old old", 11, 0644));
  int r, w;
  OK(r = open(P("coh"), O_RDONLY));
  char buf[32];
  CHECK(read(r, buf, 32) == 11, "first read");
  OK(w = open(P("coh"), O_WRONLY));
  OK(pwrite(w, "new", 3, 4));
  close(w);
  CHECK(pread(r, buf, 32, 0) == 11 && memcmp(buf, "old new old", 11) == 0, "reader saw stale data");
  close(r);
  return 0;
}

/* ---- names -------------------------------------------------------------------------------- */

static int t_rename_replace_file(void) {
  OK(write_file(P("rn-a"), "A", 1, 0644));
  OK(write_file(P("rn-b"), "B", 1, 0644));
  struct stat sa, sb;
  OK(stat(P("rn-a"), &sa));
  int keep;
  OK(keep = open(P("rn-b"), O_RDONLY));
  OK(rename(P("rn-a"), P("rn-b")));
  CHECK(access(P("rn-a"), F_OK) < 0 && errno == ENOENT, "source still exists");
  CHECK(file_is(P("rn-b"), "A"), "target content not the source's");
  OK(stat(P("rn-b"), &sb));
  CHECK(sa.st_ino == sb.st_ino, "inode changed across rename");
  char c;
  CHECK(pread(keep, &c, 1, 0) == 1 && c == 'B', "open fd of the replaced file lost its data");
  close(keep);
  /* rename onto itself is a no-op */
  OK(rename(P("rn-b"), P("rn-b")));
  CHECK(file_is(P("rn-b"), "A"), "self rename");
  /* hard links to the same inode: rename is a no-op, both stay */
  OK(link(P("rn-b"), P("rn-b2")));
  OK(rename(P("rn-b"), P("rn-b2")));
  CHECK(access(P("rn-b"), F_OK) == 0 && access(P("rn-b2"), F_OK) == 0, "rename between hard links removed one");
  return 0;
}

static int t_rename_dirs(void) {
  OK(mkdir(P("rd-src"), 0755));
  OK(write_file(P("rd-src/child"), "c", 1, 0644));
  OK(mkdir(P("rd-empty"), 0755));
  OK(rename(P("rd-src"), P("rd-empty")));
  CHECK(file_is(P("rd-empty/child"), "c"), "child not reachable after replacing an empty dir");
  CHECK(access(P("rd-src"), F_OK) < 0, "source dir still exists");
  OK(mkdir(P("rd-other"), 0755));
  OK(write_file(P("rd-full-file"), "f", 1, 0644));
  ERRNO2(rename(P("rd-other"), P("rd-empty")), ENOTEMPTY, EEXIST);
  ERRNO(rename(P("rd-full-file"), P("rd-empty")), EISDIR);
  ERRNO(rename(P("rd-other"), P("rd-full-file")), ENOTDIR);
  ERRNO(rename(P("rd-empty"), P("rd-empty/child/x")), ENOTDIR);
  ERRNO(rename(P("rd-other"), P("rd-other/sub")), EINVAL);
  /* a directory moved to another parent: its ".." follows */
  OK(mkdir(P("rd-parent"), 0755));
  OK(rename(P("rd-other"), P("rd-parent/moved")));
  struct stat a, b;
  OK(stat(P("rd-parent/moved/.."), &a));
  OK(stat(P("rd-parent"), &b));
  CHECK(a.st_ino == b.st_ino, "'..' of a moved dir is not its new parent");
  return 0;
}

static int t_renameat2_noreplace(void) {
  OK(write_file(P("nr-a"), "A", 1, 0644));
  OK(write_file(P("nr-b"), "B", 1, 0644));
  ERRNO(syscall(SYS_renameat2, AT_FDCWD, P("nr-a"), AT_FDCWD, P("nr-b"), RENAME_NOREPLACE), EEXIST);
  CHECK(file_is(P("nr-a"), "A") && file_is(P("nr-b"), "B"), "files changed by a refused rename");
  OK(syscall(SYS_renameat2, AT_FDCWD, P("nr-a"), AT_FDCWD, P("nr-c"), RENAME_NOREPLACE));
  CHECK(file_is(P("nr-c"), "A") && access(P("nr-a"), F_OK) < 0, "NOREPLACE rename to a new name");
  return 0;
}

static int t_renameat2_exchange(void) {
  OK(write_file(P("ex-a"), "A", 1, 0644));
  OK(write_file(P("ex-b"), "B", 1, 0644));
  OK(syscall(SYS_renameat2, AT_FDCWD, P("ex-a"), AT_FDCWD, P("ex-b"), RENAME_EXCHANGE));
  CHECK(file_is(P("ex-a"), "B") && file_is(P("ex-b"), "A"), "contents not exchanged");
  OK(mkdir(P("ex-d"), 0755));
  OK(write_file(P("ex-d/in"), "i", 1, 0644));
  OK(syscall(SYS_renameat2, AT_FDCWD, P("ex-a"), AT_FDCWD, P("ex-d"), RENAME_EXCHANGE));
  struct stat st;
  OK(stat(P("ex-a"), &st));
  CHECK(S_ISDIR(st.st_mode) && file_is(P("ex-a/in"), "i") && file_is(P("ex-d"), "B"), "file/dir exchange");
  ERRNO(syscall(SYS_renameat2, AT_FDCWD, P("ex-a"), AT_FDCWD, P("ex-none"), RENAME_EXCHANGE), ENOENT);
  return 0;
}

static int t_link_unlink_open(void) {
  OK(write_file(P("lk-a"), "linked data", 11, 0644));
  OK(link(P("lk-a"), P("lk-b")));
  struct stat st;
  OK(stat(P("lk-a"), &st));
  CHECK(st.st_nlink == 2, "nlink %lu after link", (unsigned long)st.st_nlink);
  int fd;
  OK(fd = open(P("lk-a"), O_RDONLY));
  OK(unlink(P("lk-a")));
  OK(stat(P("lk-b"), &st));
  CHECK(st.st_nlink == 1, "nlink %lu after unlink", (unsigned long)st.st_nlink);
  char buf[32];
  CHECK(pread(fd, buf, 32, 0) == 11 && memcmp(buf, "linked data", 11) == 0, "open fd read after unlink");
  close(fd);
  CHECK(file_is(P("lk-b"), "linked data"), "other link content");
  ERRNO(link(P("lk-b"), P("lk-b")), EEXIST);
  OK(mkdir(P("lk-dir"), 0755));
  ERRNO(link(P("lk-dir"), P("lk-dir2")), EPERM);
  return 0;
}

static int t_unlink_open_fstat(void) {
  int fd;
  OK(fd = open(P("uo"), O_RDWR | O_CREAT | O_TRUNC, 0644));
  OK(write(fd, "still here", 10));
  OK(unlink(P("uo")));
  CHECK(access(P("uo"), F_OK) < 0 && errno == ENOENT, "name still visible");
  struct stat st;
  OK(fstat(fd, &st));
  CHECK(st.st_nlink == 0, "fstat nlink %lu after unlink", (unsigned long)st.st_nlink);
  char buf[32];
  CHECK(pread(fd, buf, 32, 0) == 10 && memcmp(buf, "still here", 10) == 0, "read after unlink");
  CHECK(pwrite(fd, "!", 1, 10) == 1, "write after unlink: %s", strerror(errno));
  OK(ftruncate(fd, 4));
  OK(fstat(fd, &st));
  CHECK(st.st_size == 4, "ftruncate after unlink: size %lld", (long long)st.st_size);
  close(fd);
  /* the name can be reused at once */
  OK(write_file(P("uo"), "new", 3, 0644));
  CHECK(file_is(P("uo"), "new"), "recreated");
  return 0;
}

static int t_symlink(void) {
  OK(symlink("some/relative/target", P("sym")));
  char buf[128];
  ssize_t n = readlink(P("sym"), buf, sizeof buf);
  CHECK(n == 20 && memcmp(buf, "some/relative/target", 20) == 0, "readlink -> %zd", n);
  struct stat st;
  OK(lstat(P("sym"), &st));
  CHECK(S_ISLNK(st.st_mode) && st.st_size == 20, "lstat mode %o size %lld", st.st_mode, (long long)st.st_size);
  /* dangling */
  ERRNO(stat(P("sym"), &st), ENOENT);
  /* a link through to a file, and readlink of a non-link */
  OK(write_file(P("sym-target"), "t", 1, 0644));
  OK(symlink("sym-target", P("sym-ok")));
  CHECK(file_is(P("sym-ok"), "t"), "read through a symlink");
  ERRNO(readlink(P("sym-target"), buf, sizeof buf), EINVAL);
  ERRNO(symlink("x", P("sym-ok")), EEXIST);
  /* an absolute target is the guest's business */
  OK(symlink("/etc/passwd", P("sym-abs")));
  n = readlink(P("sym-abs"), buf, sizeof buf);
  CHECK(n == 11 && memcmp(buf, "/etc/passwd", 11) == 0, "absolute target");
  return 0;
}

static int t_symlink_long(void) {
  char target[4001];
  for (int i = 0; i < 4000; i++) target[i] = (i % 50 == 49) ? '/' : (char)('a' + i % 26);
  target[4000] = 0;
  OK(symlink(target, P("hc-symlink-long")));
  char buf[4096];
  ssize_t n = readlink(P("hc-symlink-long"), buf, sizeof buf);
  CHECK(n == 4000 && memcmp(buf, target, 4000) == 0, "readlink of a 4000-byte target -> %zd", n);
  struct stat st;
  OK(lstat(P("hc-symlink-long"), &st));
  CHECK(st.st_size == 4000, "lstat size %lld", (long long)st.st_size);
  return 0;
}

static int t_readdir_2000(void) {
  enum { N = 2000 };
  OK(mkdir(P("many"), 0755));
  for (int i = 0; i < N; i++) {
    int fd = open(P("many/entry-%04d-with-some-padding-to-make-names-longer", i), O_WRONLY | O_CREAT | O_EXCL, 0644);
    CHECK(fd >= 0, "create %d: %s", i, strerror(errno));
    close(fd);
  }
  static unsigned char seen[N];
  memset(seen, 0, sizeof seen);
  int fd;
  OK(fd = open(P("many"), O_RDONLY | O_DIRECTORY));
  char buf[512]; /* small: a few entries per call, so the offset is resumed many times */
  int dots = 0, total = 0, calls = 0;
  for (;;) {
    long n = syscall(SYS_getdents64, fd, buf, sizeof buf);
    CHECK(n >= 0, "getdents64: %s", strerror(errno));
    if (n == 0) break;
    calls++;
    for (long p = 0; p < n;) {
      struct { uint64_t ino; int64_t off; unsigned short reclen; unsigned char type; char name[]; } *d = (void *)(buf + p);
      if (!strcmp(d->name, ".") || !strcmp(d->name, "..")) {
        dots++;
        CHECK(d->type == DT_DIR, "dot type %d", d->type);
      } else {
        int i;
        CHECK(sscanf(d->name, "entry-%d-", &i) == 1 && i >= 0 && i < N, "unexpected name %s", d->name);
        CHECK(!seen[i], "name %s seen twice", d->name);
        CHECK(d->type == DT_REG, "type %d for %s", d->type, d->name);
        seen[i] = 1;
        total++;
      }
      p += d->reclen;
    }
  }
  close(fd);
  CHECK(dots == 2, "%d dot entries", dots);
  CHECK(total == N, "%d of %d names (in %d calls)", total, N, calls);
  CHECK(calls > 50, "only %d getdents calls", calls);
  return 0;
}

static int t_seekdir_telldir(void) {
  if (access(P("many"), F_OK) < 0) {
    OK(mkdir(P("many"), 0755));
    for (int i = 0; i < 600; i++) {
      int fd = open(P("many/entry-%04d-with-some-padding-to-make-names-longer", i), O_WRONLY | O_CREAT, 0644);
      CHECK(fd >= 0, "create");
      close(fd);
    }
  }
  DIR *d = opendir(P("many"));
  CHECK(d, "opendir: %s", strerror(errno));
  struct dirent *e;
  for (int i = 0; i < 500; i++) CHECK(readdir(d), "readdir %d ended early", i);
  long pos = telldir(d);
  char names[10][256];
  for (int i = 0; i < 10; i++) {
    CHECK((e = readdir(d)), "readdir after telldir");
    snprintf(names[i], 256, "%s", e->d_name);
  }
  for (int i = 0; i < 300; i++) readdir(d);
  seekdir(d, pos);
  for (int i = 0; i < 10; i++) {
    CHECK((e = readdir(d)), "readdir after seekdir");
    CHECK(!strcmp(names[i], e->d_name), "after seekdir got %s, expected %s", e->d_name, names[i]);
  }
  rewinddir(d);
  int count = 0;
  while ((e = readdir(d))) count++;
  closedir(d);
  CHECK(count >= 602, "after rewinddir only %d entries", count);
  /* a fresh open in the middle of creating/removing entries does not repeat names */
  return 0;
}

static int t_readdir_types(void) {
  OK(mkdir(P("types"), 0755));
  OK(mkdir(P("types/d"), 0755));
  OK(write_file(P("types/f"), "", 0, 0644));
  OK(symlink("f", P("types/l")));
  OK(mkfifo(P("types/p"), 0644));
  DIR *d = opendir(P("types"));
  CHECK(d, "opendir");
  struct dirent *e;
  int found = 0;
  while ((e = readdir(d))) {
    const char *n = e->d_name;
    int want = !strcmp(n, "d") ? DT_DIR : !strcmp(n, "f") ? DT_REG : !strcmp(n, "l") ? DT_LNK :
               !strcmp(n, "p") ? DT_FIFO : -1;
    if (want < 0) continue;
    CHECK(e->d_type == want, "%s: d_type %d, expected %d", n, e->d_type, want);
    found++;
  }
  closedir(d);
  CHECK(found == 4, "found %d of 4", found);
  return 0;
}

static int t_mkdir_rmdir(void) {
  OK(mkdir(P("mk"), 0755));
  ERRNO(mkdir(P("mk"), 0755), EEXIST);
  OK(write_file(P("mk/f"), "", 0, 0644));
  ERRNO2(rmdir(P("mk")), ENOTEMPTY, EEXIST);
  ERRNO(rmdir(P("mk/f")), ENOTDIR);
  ERRNO(unlink(P("mk")), EISDIR);
  ERRNO(mkdir(P("mk/f/x"), 0755), ENOTDIR);
  OK(unlink(P("mk/f")));
  struct stat st, p0, p1;
  OK(stat(base, &p0));
  OK(mkdir(P("mk/sub"), 0700));
  OK(stat(P("mk"), &p1));
  CHECK(p1.st_nlink == 3, "nlink of a dir with one subdir %lu", (unsigned long)p1.st_nlink);
  OK(stat(P("mk/sub"), &st));
  CHECK(S_ISDIR(st.st_mode) && (st.st_mode & 07777) == 0700 && st.st_nlink == 2, "subdir mode %o nlink %lu",
        st.st_mode, (unsigned long)st.st_nlink);
  OK(rmdir(P("mk/sub")));
  OK(rmdir(P("mk")));
  CHECK(access(P("mk"), F_OK) < 0, "still exists");
  /* deep nesting */
  char path[4096];
  int n = snprintf(path, sizeof path, "%s/deep", base);
  OK(mkdir(path, 0755));
  for (int i = 0; i < 40; i++) {
    n += snprintf(path + n, sizeof path - n, "/level%02d", i);
    OK(mkdir(path, 0755));
  }
  snprintf(path + n, sizeof path - n, "/leaf");
  OK(write_file(path, "deep", 4, 0644));
  CHECK(file_is(path, "deep"), "deep file");
  return 0;
}

static int t_long_names(void) {
  char name[300];
  memset(name, 'n', 255);
  name[255] = 0;
  int fd;
  OK(fd = open(P("%s", name), O_WRONLY | O_CREAT, 0644));
  close(fd);
  struct stat st;
  OK(stat(P("%s", name), &st));
  name[0] = 'd';
  OK(mkdir(P("%s", name), 0755));
  OK(rmdir(P("%s", name)));
  name[255] = 'n';
  name[256] = 0;
  ERRNO(open(P("%s", name), O_WRONLY | O_CREAT, 0644), ENAMETOOLONG);
  ERRNO(mkdir(P("%s", name), 0755), ENAMETOOLONG);
  ERRNO(stat(P("%s", name), &st), ENAMETOOLONG);
  /* names with odd bytes */
  const char odd[] = "sp ace\ttab\x01\xff\xfe-utf8-\xc3\xa9";
  OK(write_file(P("%s", odd), "odd", 3, 0644));
  CHECK(file_is(P("%s", odd), "odd"), "odd name");
  return 0;
}

/* ---- attributes --------------------------------------------------------------------------- */

static int t_chmod(void) {
  OK(write_file(P("hc-mode-setuid"), "#!/bin/sh\n", 10, 0644));
  OK(chmod(P("hc-mode-setuid"), 04755));
  struct stat st;
  OK(stat(P("hc-mode-setuid"), &st));
  CHECK((st.st_mode & 07777) == 04755, "setuid mode %o", st.st_mode & 07777);
  OK(chmod(P("hc-mode-setuid"), 02711));
  OK(stat(P("hc-mode-setuid"), &st));
  CHECK((st.st_mode & 07777) == 02711, "setgid mode %o", st.st_mode & 07777);
  OK(chmod(P("hc-mode-setuid"), 04755));
  OK(mkdir(P("hc-mode-sticky"), 0755));
  OK(chmod(P("hc-mode-sticky"), 01777));
  OK(stat(P("hc-mode-sticky"), &st));
  CHECK((st.st_mode & 07777) == 01777 && S_ISDIR(st.st_mode), "sticky dir mode %o", st.st_mode);
  int fd;
  OK(fd = open(P("hc-mode-setuid"), O_RDONLY));
  OK(fchmod(fd, 0600));
  OK(fstat(fd, &st));
  CHECK((st.st_mode & 07777) == 0600, "fchmod %o", st.st_mode & 07777);
  OK(fchmod(fd, 04755));
  close(fd);
  OK(write_file(P("hc-mode-000"), "", 0, 0644));
  OK(chmod(P("hc-mode-000"), 0));
  OK(stat(P("hc-mode-000"), &st));
  CHECK((st.st_mode & 07777) == 0, "mode 000 -> %o", st.st_mode & 07777);
  /* the umask applies to creation */
  mode_t old = umask(027);
  int r1 = mkdir(P("umask-dir"), 0777);
  int r2 = write_file(P("umask-file"), "", 0, 0666);
  umask(old);
  OK(r1);
  OK(r2);
  OK(stat(P("umask-dir"), &st));
  CHECK((st.st_mode & 07777) == 0750, "umask dir %o", st.st_mode & 07777);
  OK(stat(P("umask-file"), &st));
  CHECK((st.st_mode & 07777) == 0640, "umask file %o", st.st_mode & 07777);
  return 0;
}

static int t_chown(void) {
  OK(write_file(P("hc-chown"), "owned", 5, 0644));
  OK(chown(P("hc-chown"), 1234, 5678));
  struct stat st;
  OK(stat(P("hc-chown"), &st));
  CHECK(st.st_uid == 1234 && st.st_gid == 5678, "owner %u:%u", st.st_uid, st.st_gid);
  OK(write_file(P("chown2"), "", 0, 0644));
  int fd;
  OK(fd = open(P("chown2"), O_RDONLY));
  OK(fchown(fd, 4321, -1));
  OK(fstat(fd, &st));
  close(fd);
  CHECK(st.st_uid == 4321 && st.st_gid == 0, "fchown uid only -> %u:%u", st.st_uid, st.st_gid);
  OK(symlink("hc-chown", P("chown-link")));
  OK(lchown(P("chown-link"), 99, 98));
  OK(lstat(P("chown-link"), &st));
  CHECK(st.st_uid == 99 && st.st_gid == 98, "lchown -> %u:%u", st.st_uid, st.st_gid);
  OK(stat(P("hc-chown"), &st));
  CHECK(st.st_uid == 1234, "lchown followed the link");
  /* chown clears setuid on a regular file */
  OK(chmod(P("chown2"), 04755));
  OK(chown(P("chown2"), 1000, 1000));
  OK(stat(P("chown2"), &st));
  CHECK((st.st_mode & 06000) == 0, "setuid survived chown: %o", st.st_mode & 07777);
  return 0;
}

static int t_utimensat(void) {
  OK(write_file(P("hc-times"), "t", 1, 0644));
  struct timespec ts[2] = {{1234567890, 123456789}, {1600000000, 987654321}};
  OK(utimensat(AT_FDCWD, P("hc-times"), ts, 0));
  struct stat st;
  OK(stat(P("hc-times"), &st));
  CHECK(st.st_atim.tv_sec == 1234567890 && st.st_atim.tv_nsec == 123456789, "atime %lld.%09ld",
        (long long)st.st_atim.tv_sec, st.st_atim.tv_nsec);
  CHECK(st.st_mtim.tv_sec == 1600000000 && st.st_mtim.tv_nsec == 987654321, "mtime %lld.%09ld",
        (long long)st.st_mtim.tv_sec, st.st_mtim.tv_nsec);
  /* UTIME_OMIT keeps atime, sets mtime */
  struct timespec t2[2] = {{0, UTIME_OMIT}, {1700000000, 5}};
  OK(utimensat(AT_FDCWD, P("hc-times"), t2, 0));
  OK(stat(P("hc-times"), &st));
  CHECK(st.st_atim.tv_sec == 1234567890 && st.st_atim.tv_nsec == 123456789, "UTIME_OMIT changed atime to %lld.%09ld",
        (long long)st.st_atim.tv_sec, st.st_atim.tv_nsec);
  CHECK(st.st_mtim.tv_sec == 1700000000 && st.st_mtim.tv_nsec == 5, "mtime after OMIT %lld.%09ld",
        (long long)st.st_mtim.tv_sec, st.st_mtim.tv_nsec);
  /* UTIME_NOW on atime only */
  struct timespec t3[2] = {{0, UTIME_NOW}, {0, UTIME_OMIT}};
  time_t now = time(NULL);
  OK(utimensat(AT_FDCWD, P("hc-times"), t3, 0));
  OK(stat(P("hc-times"), &st));
  CHECK(st.st_mtim.tv_sec == 1700000000, "UTIME_OMIT on mtime changed it");
  (void)now; /* guest and host clocks may differ: only check it moved */
  CHECK(st.st_atim.tv_sec != 1234567890, "UTIME_NOW did not change atime");
  /* futimens on an fd; and a write updates mtime */
  int fd;
  OK(fd = open(P("hc-times"), O_RDWR));
  OK(futimens(fd, ts));
  OK(fstat(fd, &st));
  CHECK(st.st_mtim.tv_sec == 1600000000 && st.st_mtim.tv_nsec == 987654321, "futimens mtime");
  OK(write(fd, "x", 1));
  close(fd);
  OK(stat(P("hc-times"), &st));
  CHECK(st.st_mtim.tv_sec != 1600000000, "a write did not update mtime");
  OK(utimensat(AT_FDCWD, P("hc-times"), ts, 0));
  /* the link itself */
  OK(symlink("hc-times", P("times-link")));
  int r = utimensat(AT_FDCWD, P("times-link"), ts, AT_SYMLINK_NOFOLLOW);
  if (r == 0) {
    OK(lstat(P("times-link"), &st));
    CHECK(st.st_mtim.tv_sec == 1600000000, "link mtime not set");
  }
  return 0;
}

static int t_statfs(void) {
  struct statfs s;
  OK(statfs(base, &s));
  CHECK(s.f_type == FUSE_SUPER_MAGIC, "f_type %lx", (unsigned long)s.f_type);
  CHECK(s.f_bsize > 0 && s.f_blocks > 0 && s.f_bfree <= s.f_blocks && s.f_bavail <= s.f_bfree,
        "bsize %ld blocks %llu bfree %llu bavail %llu", (long)s.f_bsize, (unsigned long long)s.f_blocks,
        (unsigned long long)s.f_bfree, (unsigned long long)s.f_bavail);
  CHECK(s.f_namelen == 255, "namelen %ld", (long)s.f_namelen);
  CHECK(s.f_files == 0 || s.f_ffree <= s.f_files, "files %llu ffree %llu", (unsigned long long)s.f_files,
        (unsigned long long)s.f_ffree);
  int fd;
  OK(fd = open(base, O_RDONLY | O_DIRECTORY));
  struct statfs s2;
  OK(fstatfs(fd, &s2));
  close(fd);
  CHECK(s2.f_blocks == s.f_blocks, "fstatfs differs");
  printf("@@VAL statfs %ld %llu %llu %llu %llu %llu@@\n", (long)s.f_bsize, (unsigned long long)s.f_blocks,
         (unsigned long long)s.f_bfree, (unsigned long long)s.f_bavail, (unsigned long long)s.f_files,
         (unsigned long long)s.f_ffree);
  return 0;
}

static int t_statx(void) {
  OK(write_file(P("statx"), "12345", 5, 0640));
  struct statx sx;
  OK(statx(AT_FDCWD, P("statx"), 0, STATX_BASIC_STATS | STATX_BTIME, &sx));
  CHECK((sx.stx_mask & STATX_BASIC_STATS) == STATX_BASIC_STATS, "mask %x", sx.stx_mask);
  CHECK(sx.stx_size == 5 && (sx.stx_mode & 07777) == 0640 && S_ISREG(sx.stx_mode) && sx.stx_nlink == 1,
        "size %llu mode %o nlink %u", (unsigned long long)sx.stx_size, sx.stx_mode, sx.stx_nlink);
  struct stat st;
  OK(stat(P("statx"), &st));
  CHECK(sx.stx_ino == st.st_ino && sx.stx_mtime.tv_sec == st.st_mtim.tv_sec &&
            sx.stx_mtime.tv_nsec == (unsigned)st.st_mtim.tv_nsec,
        "statx and stat disagree");
  OK(statx(AT_FDCWD, P("statx"), AT_STATX_FORCE_SYNC, STATX_SIZE, &sx));
  CHECK(sx.stx_size == 5, "FORCE_SYNC size");
  int fd;
  OK(fd = open(P("statx"), O_RDONLY));
  OK(statx(fd, "", AT_EMPTY_PATH, STATX_BASIC_STATS, &sx));
  close(fd);
  CHECK(sx.stx_size == 5, "AT_EMPTY_PATH size");
  return 0;
}

static int t_mkfifo_mknod(void) {
  OK(mkfifo(P("hc-fifo"), 0640));
  struct stat st;
  OK(stat(P("hc-fifo"), &st));
  CHECK(S_ISFIFO(st.st_mode) && (st.st_mode & 07777) == 0640, "fifo mode %o", st.st_mode);
  OK(mknod(P("hc-sock"), S_IFSOCK | 0644, 0));
  OK(stat(P("hc-sock"), &st));
  CHECK(S_ISSOCK(st.st_mode) && (st.st_mode & 07777) == 0644, "socket mode %o", st.st_mode);
  OK(mknod(P("hc-mknod-reg"), S_IFREG | 0600, 0));
  OK(stat(P("hc-mknod-reg"), &st));
  CHECK(S_ISREG(st.st_mode) && st.st_size == 0 && (st.st_mode & 07777) == 0600, "regular mknod mode %o",
        st.st_mode);
  ERRNO(mkfifo(P("hc-fifo"), 0640), EEXIST);
  OK(unlink(P("hc-sock")));
  OK(mknod(P("hc-sock"), S_IFSOCK | 0644, 0));
  return 0;
}

static int t_fifo_io(void) {
  /* a FIFO on the share is a guest-local pipe: open both ends and pass data */
  OK(mkfifo(P("fifo-io"), 0600));
  int r, w;
  OK(r = open(P("fifo-io"), O_RDONLY | O_NONBLOCK));
  OK(w = open(P("fifo-io"), O_WRONLY | O_NONBLOCK));
  OK(write(w, "pipe", 4));
  char buf[8];
  CHECK(read(r, buf, 8) == 4 && !memcmp(buf, "pipe", 4), "fifo data");
  close(r);
  close(w);
  return 0;
}

static int t_unix_socket_bind(void) {
  int s = socket(AF_UNIX, SOCK_STREAM, 0);
  CHECK(s >= 0, "socket");
  struct sockaddr_un a = {.sun_family = AF_UNIX};
  const char *p = P("bound.sock");
  CHECK(strlen(p) < sizeof a.sun_path, "path too long for sun_path");
  strcpy(a.sun_path, p);
  OK(bind(s, (struct sockaddr *)&a, sizeof a));
  OK(listen(s, 1));
  int c = socket(AF_UNIX, SOCK_STREAM, 0);
  OK(connect(c, (struct sockaddr *)&a, sizeof a));
  int x;
  OK(x = accept(s, NULL, NULL));
  OK(write(c, "hi", 2));
  char buf[4];
  CHECK(read(x, buf, 4) == 2, "socket data");
  close(x);
  close(c);
  close(s);
  struct stat st;
  OK(lstat(p, &st));
  CHECK(S_ISSOCK(st.st_mode), "bound socket type %o", st.st_mode);
  return 0;
}

static int t_mmap_shared(void) {
  int fd;
  OK(fd = open(P("hc-mmap"), O_RDWR | O_CREAT | O_TRUNC, 0644));
  size_t n = 3 * 4096 + 100;
  OK(ftruncate(fd, (off_t)n));
  unsigned char *m = mmap(NULL, n, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
  CHECK(m != MAP_FAILED, "mmap: %s", strerror(errno));
  for (size_t i = 0; i < n; i++) m[i] = pat(i + 1);
  OK(msync(m, n, MS_SYNC));
  OK(munmap(m, n));
  close(fd);
  unsigned char *b = malloc(n + 10);
  OK(fd = open(P("hc-mmap"), O_RDONLY));
  CHECK(read(fd, b, n + 10) == (ssize_t)n, "read back size");
  close(fd);
  for (size_t i = 0; i < n; i++) CHECK(b[i] == pat(i + 1), "byte %zu differs", i);
  /* a write(2) is visible through an existing shared mapping */
  OK(fd = open(P("hc-mmap"), O_RDWR));
  m = mmap(NULL, n, PROT_READ, MAP_SHARED, fd, 0);
  CHECK(m != MAP_FAILED, "mmap ro: %s", strerror(errno));
  OK(pwrite(fd, "ZZ", 2, 5000));
  CHECK(m[5000] == 'Z' && m[5001] == 'Z', "mapping did not see the write");
  OK(pwrite(fd, b + 5000, 2, 5000)); /* restore */
  munmap(m, n);
  close(fd);
  free(b);
  return 0;
}

static int t_mmap_private_exec(void) {
  /* copy ourselves to the share and exec the copy: page-cache backed private/exec mappings */
  char self[4096];
  ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);
  CHECK(n > 0, "readlink /proc/self/exe");
  self[n] = 0;
  int in, out;
  OK(in = open(self, O_RDONLY));
  OK(out = open(P("probe-copy"), O_WRONLY | O_CREAT | O_TRUNC, 0755));
  char buf[65536];
  ssize_t k;
  while ((k = read(in, buf, sizeof buf)) > 0) CHECK(write(out, buf, (size_t)k) == k, "copy write");
  close(in);
  close(out);
  pid_t pid = fork();
  if (pid == 0) {
    int devnull = open("/dev/null", O_WRONLY);
    if (devnull >= 0) dup2(devnull, 1);
    execl(P("probe-copy"), "probe-copy", "--exit-42", (char *)NULL);
    _exit(errno == ETXTBSY ? 98 : 99);
  }
  int st;
  OK(waitpid(pid, &st, 0));
  CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 42, "exec from the share: status %x", st);
  return 0;
}

static int t_o_tmpfile(void) {
  int fd = open(base, O_TMPFILE | O_RDWR, 0600);
  CHECK(fd >= 0, "open O_TMPFILE: %s", strerror(errno));
  OK(write(fd, "tmp", 3));
  char buf[8];
  CHECK(pread(fd, buf, 8, 0) == 3, "read back");
  char proc[64];
  snprintf(proc, sizeof proc, "/proc/self/fd/%d", fd);
  OK(linkat(AT_FDCWD, proc, AT_FDCWD, P("tmpfile-linked"), AT_SYMLINK_FOLLOW));
  close(fd);
  CHECK(file_is(P("tmpfile-linked"), "tmp"), "linked tmpfile content");
  return 0;
}

static int t_copy_file_range(void) {
  size_t n = 300000;
  unsigned char *b = malloc(n), *c = malloc(n);
  for (size_t i = 0; i < n; i++) b[i] = pat(i * 3);
  OK(write_file(P("cfr-src"), b, n, 0644));
  int in, out;
  OK(in = open(P("cfr-src"), O_RDONLY));
  OK(out = open(P("hc-copy-range"), O_RDWR | O_CREAT | O_TRUNC, 0644));
  loff_t ioff = 1000, ooff = 5000;
  size_t left = n - 1000;
  while (left > 0) {
    ssize_t k = copy_file_range(in, &ioff, out, &ooff, left, 0);
    CHECK(k > 0, "copy_file_range: %s", strerror(errno));
    left -= (size_t)k;
  }
  close(in);
  struct stat st;
  OK(fstat(out, &st));
  CHECK(st.st_size == (off_t)(n - 1000 + 5000), "copy size %lld", (long long)st.st_size);
  CHECK(pread_all(out, c, n - 1000, 5000) == 0, "read copy");
  close(out);
  CHECK(memcmp(b + 1000, c, n - 1000) == 0, "copied data differs");
  free(b);
  free(c);
  return 0;
}

static int t_locks(void) {
  int fd;
  OK(fd = open(P("locks"), O_RDWR | O_CREAT, 0644));
  OK(flock(fd, LOCK_EX));
  int fd2;
  OK(fd2 = open(P("locks"), O_RDWR));
  ERRNO(flock(fd2, LOCK_EX | LOCK_NB), EWOULDBLOCK);
  OK(flock(fd, LOCK_UN));
  OK(flock(fd2, LOCK_EX | LOCK_NB));
  close(fd2);
  struct flock l = {.l_type = F_WRLCK, .l_whence = SEEK_SET, .l_start = 0, .l_len = 10};
  OK(fcntl(fd, F_SETLK, &l));
  pid_t pid = fork();
  if (pid == 0) {
    int f = open(P("locks"), O_RDWR);
    struct flock q = {.l_type = F_WRLCK, .l_whence = SEEK_SET, .l_start = 5, .l_len = 1};
    if (f < 0 || fcntl(f, F_GETLK, &q) < 0) _exit(2);
    _exit(q.l_type == F_WRLCK ? 0 : 1);
  }
  int st;
  OK(waitpid(pid, &st, 0));
  CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0, "F_GETLK from another process did not see the lock (%x)", st);
  l.l_type = F_UNLCK;
  OK(fcntl(fd, F_SETLK, &l));
  close(fd);
  return 0;
}

static int t_xattr_unsupported(void) {
  OK(write_file(P("xattr"), "", 0, 0644));
  ERRNO(setxattr(P("xattr"), "user.test", "v", 1, 0), EOPNOTSUPP);
  char buf[64];
  ERRNO2(getxattr(P("xattr"), "user.test", buf, sizeof buf), EOPNOTSUPP, ENODATA);
  ssize_t n = listxattr(P("xattr"), buf, sizeof buf);
  CHECK(n == 0 || (n < 0 && errno == EOPNOTSUPP), "listxattr -> %zd %s", n, strerror(errno));
  return 0;
}

/* Run only when named (the daemons serve xattrs only with --xattr / -o xattr). Leaves
   xattr-left with user.left=kept for the host to check. */
static int t_xattr_user(void) {
  const char *f = P("xattr-user");
  OK(write_file(f, "x", 1, 0644));
  OK(setxattr(f, "user.a", "hello", 5, 0));
  CHECK(getxattr(f, "user.a", NULL, 0) == 5, "size probe of user.a");
  char buf[8192];
  ssize_t n = getxattr(f, "user.a", buf, sizeof buf);
  CHECK(n == 5 && !memcmp(buf, "hello", 5), "getxattr user.a -> %zd", n);
  ERRNO(getxattr(f, "user.a", buf, 2), ERANGE);
  ERRNO(setxattr(f, "user.a", "x", 1, XATTR_CREATE), EEXIST);
  ERRNO(setxattr(f, "user.nope", "x", 1, XATTR_REPLACE), ENODATA);
  OK(setxattr(f, "user.a", "replaced", 8, XATTR_REPLACE));
  n = getxattr(f, "user.a", buf, sizeof buf);
  CHECK(n == 8 && !memcmp(buf, "replaced", 8), "after XATTR_REPLACE -> %zd", n);
  ERRNO(getxattr(f, "user.missing", buf, sizeof buf), ENODATA);
  static char big[4000];
  for (size_t i = 0; i < sizeof big; i++) big[i] = pat(i);
  OK(setxattr(f, "user.big", big, sizeof big, 0));
  n = getxattr(f, "user.big", buf, sizeof buf);
  CHECK(n == (ssize_t)sizeof big && !memcmp(buf, big, sizeof big), "4000-byte value -> %zd", n);
  ssize_t l = listxattr(f, NULL, 0);
  CHECK(l > 0, "listxattr size probe -> %zd", l);
  n = listxattr(f, buf, sizeof buf);
  CHECK(n == l, "listxattr %zd vs probe %zd", n, l);
  int sawA = 0, sawBig = 0;
  for (char *p = buf; p < buf + n; p += strlen(p) + 1) {
    sawA |= !strcmp(p, "user.a");
    sawBig |= !strcmp(p, "user.big");
  }
  CHECK(sawA && sawBig, "listxattr lacks user.a or user.big");
  ERRNO(listxattr(f, buf, 3), ERANGE);
  OK(removexattr(f, "user.a"));
  ERRNO(getxattr(f, "user.a", buf, sizeof buf), ENODATA);
  ERRNO(removexattr(f, "user.a"), ENODATA);
  /* directories carry user xattrs too; symlinks may not (the guest VFS refuses user.* on them) */
  OK(mkdir(P("xattr-dir"), 0755));
  OK(setxattr(P("xattr-dir"), "user.d", "dir", 3, 0));
  CHECK(getxattr(P("xattr-dir"), "user.d", buf, sizeof buf) == 3, "user.d on a directory");
  OK(symlink("xattr-user", P("xattr-link")));
  ERRNO(lsetxattr(P("xattr-link"), "user.l", "x", 1, 0), EPERM);
  /* through the link, the target's */
  n = getxattr(P("xattr-link"), "user.big", buf, sizeof buf);
  CHECK(n == (ssize_t)sizeof big, "getxattr through a symlink -> %zd", n);
  OK(write_file(P("xattr-left"), "", 0, 0644));
  OK(setxattr(P("xattr-left"), "user.left", "kept", 4, 0));
  return 0;
}

/* ---- credentials -------------------------------------------------------------------------- */

static int u_create(void) {
  OK(write_file(P("users/hc-user-file"), "by user", 7, 0640));
  OK(mkdir(P("users/hc-user-dir"), 0750));
  OK(symlink("hc-user-file", P("users/hc-user-link")));
  struct stat st;
  OK(stat(P("users/hc-user-file"), &st));
  CHECK(st.st_uid == USER_ID && st.st_gid == USER_ID, "file owned by %u:%u", st.st_uid, st.st_gid);
  OK(stat(P("users/hc-user-dir"), &st));
  CHECK(st.st_uid == USER_ID && st.st_gid == USER_ID, "dir owned by %u:%u", st.st_uid, st.st_gid);
  OK(lstat(P("users/hc-user-link"), &st));
  CHECK(st.st_uid == USER_ID && st.st_gid == USER_ID, "symlink owned by %u:%u", st.st_uid, st.st_gid);
  /* the owner may chmod and set times */
  OK(chmod(P("users/hc-user-file"), 0600));
  OK(utimensat(AT_FDCWD, P("users/hc-user-file"), NULL, 0));
  return 0;
}

static int t_user_create(void) {
  OK(mkdir(P("users"), 0777));
  OK(chmod(P("users"), 0777));
  return as_user(u_create);
}

static int u_denied(void) {
  ERRNO(open(P("users/root-file"), O_WRONLY), EACCES);
  ERRNO(open(P("users/root-file"), O_RDWR | O_TRUNC), EACCES);
  ERRNO(truncate(P("users/root-file"), 0), EACCES);
  ERRNO(chmod(P("users/root-file"), 0666), EPERM);
  ERRNO(chown(P("users/root-file"), USER_ID, USER_ID), EPERM);
  ERRNO(open(P("users/root-secret"), O_RDONLY), EACCES);
  ERRNO(open(P("root-only/x"), O_WRONLY | O_CREAT, 0644), EACCES);
  ERRNO(mkdir(P("root-only/d"), 0755), EACCES);
  ERRNO(unlink(P("root-only/f")), EACCES);
  /* sticky dir: may not remove another user's file */
  ERRNO(unlink(P("users/sticky/rootfile")), EPERM);
  /* reading the 0644 file works */
  CHECK(file_is(P("users/root-file"), "root"), "user cannot read a 0644 file");
  return 0;
}

static int t_user_denied(void) {
  if (access(P("users"), F_OK) < 0) OK(mkdir(P("users"), 0777));
  OK(chmod(P("users"), 0777));
  OK(write_file(P("users/root-file"), "root", 4, 0644));
  OK(chmod(P("users/root-file"), 0644));
  OK(write_file(P("users/root-secret"), "s", 1, 0600));
  OK(mkdir(P("root-only"), 0755));
  OK(write_file(P("root-only/f"), "", 0, 0666));
  OK(mkdir(P("users/sticky"), 0777));
  OK(chmod(P("users/sticky"), 01777));
  OK(write_file(P("users/sticky/rootfile"), "", 0, 0666));
  OK(chmod(P("users/sticky/rootfile"), 0666));
  int r = as_user(u_denied);
  if (r) return r;
  CHECK(file_is(P("users/root-file"), "root"), "root file changed");
  return 0;
}

static int u_access(void) {
  OK(access(P("acc-file"), R_OK));
  ERRNO(access(P("acc-file"), W_OK), EACCES);
  ERRNO(access(P("acc-file"), X_OK), EACCES);
  OK(access(P("acc-exec"), X_OK | R_OK));
  OK(faccessat(AT_FDCWD, P("acc-file"), R_OK, AT_EACCESS));
  ERRNO(faccessat(AT_FDCWD, P("acc-file"), W_OK, AT_EACCESS), EACCES);
  return 0;
}

static int t_access(void) {
  OK(write_file(P("acc-file"), "a", 1, 0644));
  OK(chmod(P("acc-file"), 0644));
  OK(write_file(P("acc-exec"), "#!/bin/sh\n", 10, 0755));
  OK(chmod(P("acc-exec"), 0755));
  OK(access(P("acc-file"), R_OK | W_OK));
  OK(access(P("acc-file"), F_OK));
  ERRNO(access(P("acc-file"), X_OK), EACCES);
  OK(access(P("acc-exec"), X_OK));
  OK(faccessat(AT_FDCWD, P("acc-file"), R_OK | W_OK, AT_EACCESS));
  ERRNO(access(P("acc-missing"), F_OK), ENOENT);
  OK(symlink("acc-missing", P("acc-dangling")));
  OK(faccessat(AT_FDCWD, P("acc-dangling"), F_OK, AT_SYMLINK_NOFOLLOW));
  return as_user(u_access);
}

static int t_setgid_dir_inherit(void) {
  OK(mkdir(P("sgid"), 0755));
  OK(chown(P("sgid"), 0, 5678));
  OK(chmod(P("sgid"), 02775));
  OK(write_file(P("sgid/f"), "", 0, 0644));
  OK(mkdir(P("sgid/d"), 0755));
  struct stat st;
  OK(stat(P("sgid/f"), &st));
  CHECK(st.st_gid == 5678, "file in a setgid dir has gid %u", st.st_gid);
  OK(stat(P("sgid/d"), &st));
  CHECK(st.st_gid == 5678 && (st.st_mode & 02000), "dir in a setgid dir: gid %u mode %o", st.st_gid, st.st_mode);
  return 0;
}

static int t_write_clears_setuid(void) {
  if (access(P("users"), F_OK) < 0) OK(mkdir(P("users"), 0777));
  OK(chmod(P("users"), 0777));
  OK(write_file(P("users/suid"), "x", 1, 0666));
  OK(chmod(P("users/suid"), 04777));
  pid_t pid = fork();
  if (pid == 0) {
    if (setresgid(USER_ID, USER_ID, USER_ID) < 0 || setresuid(USER_ID, USER_ID, USER_ID) < 0) _exit(2);
    int fd = open(P("users/suid"), O_WRONLY | O_APPEND);
    if (fd < 0 || write(fd, "y", 1) != 1) _exit(3);
    close(fd);
    _exit(0);
  }
  int st;
  OK(waitpid(pid, &st, 0));
  CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0, "user write failed (%x)", st);
  struct stat s;
  OK(stat(P("users/suid"), &s));
  CHECK((s.st_mode & 04000) == 0, "setuid kept after a write by another user: %o", s.st_mode & 07777);
  return 0;
}

/* ---- consistency -------------------------------------------------------------------------- */

static int t_inode_stable_after_drop_caches(void) {
  OK(write_file(P("stable"), "s", 1, 0644));
  OK(mkdir(P("stable-dir"), 0755));
  OK(write_file(P("stable-dir/f"), "f", 1, 0644));
  struct stat a, b, c, d;
  OK(stat(P("stable"), &a));
  OK(stat(P("stable-dir/f"), &c));
  sync();
  int fd = open("/proc/sys/vm/drop_caches", O_WRONLY);
  CHECK(fd >= 0, "open drop_caches");
  CHECK(write(fd, "3", 1) == 1, "write drop_caches");
  close(fd);
  OK(stat(P("stable"), &b));
  OK(stat(P("stable-dir/f"), &d));
  CHECK(a.st_ino == b.st_ino && c.st_ino == d.st_ino, "inode numbers changed after forget");
  CHECK(file_is(P("stable-dir/f"), "f"), "content after drop_caches");
  return 0;
}

static int t_open_close_many(void) {
  OK(write_file(P("oc"), "oc", 2, 0644));
  for (int i = 0; i < 5000; i++) {
    int fd = open(P("oc"), (i & 1) ? O_RDONLY : O_RDWR);
    CHECK(fd >= 0, "open #%d: %s", i, strerror(errno));
    close(fd);
  }
  int fds[900];
  for (int i = 0; i < 900; i++) {
    fds[i] = open(P("oc"), O_RDONLY);
    CHECK(fds[i] >= 0, "holding open #%d: %s", i, strerror(errno));
  }
  for (int i = 0; i < 900; i++) close(fds[i]);
  for (int i = 0; i < 3000; i++) {
    char n[32];
    snprintf(n, sizeof n, "oc-%d", i % 7);
    int fd = open(P("%s", n), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    CHECK(fd >= 0, "create/unlink #%d: %s", i, strerror(errno));
    close(fd);
    CHECK(unlink(P("%s", n)) == 0, "unlink #%d: %s", i, strerror(errno));
  }
  return 0;
}

static int t_cwd_relative(void) {
  OK(mkdir(P("cwd"), 0755));
  OK(mkdir(P("cwd/sub"), 0755));
  OK(chdir(P("cwd/sub")));
  OK(write_file("../rel", "rel", 3, 0644));
  CHECK(file_is("../rel", "rel"), "relative read");
  char buf[4096];
  CHECK(getcwd(buf, sizeof buf) && !strcmp(buf, P("cwd/sub")), "getcwd %s", buf);
  int dfd;
  OK(dfd = open("..", O_RDONLY | O_DIRECTORY));
  int fd;
  OK(fd = openat(dfd, "at-file", O_WRONLY | O_CREAT, 0644));
  close(fd);
  OK(renameat(dfd, "at-file", dfd, "at-file2"));
  OK(unlinkat(dfd, "at-file2", 0));
  OK(mkdirat(dfd, "at-dir", 0755));
  OK(unlinkat(dfd, "at-dir", AT_REMOVEDIR));
  close(dfd);
  OK(chdir("/"));
  return 0;
}


/* ---- harder cases ------------------------------------------------------------------------- */

static int t_offsets_around_4g(void) {
  int fd;
  OK(fd = open(P("around4g"), O_RDWR | O_CREAT | O_TRUNC, 0644));
  size_t n = 8192;
  unsigned char w[8192], r[8192];
  for (size_t i = 0; i < n; i++) w[i] = pat(i + 11);
  const off_t at = 4 * GIB - 4096; /* crosses 2^32 */
  CHECK(pwrite(fd, w, n, at) == (ssize_t)n, "pwrite across 4 GiB: %s", strerror(errno));
  CHECK(pread_all(fd, r, n, at) == 0 && memcmp(w, r, n) == 0, "read back across 4 GiB");
  off_t o = lseek(fd, 0, SEEK_DATA);
  CHECK(o >= 4 * GIB - 8192 && o <= at, "SEEK_DATA -> %lld (%s)", (long long)o, strerror(errno));
  OK(fallocate(fd, 0, 6 * GIB, 65536));
  struct stat st;
  OK(fstat(fd, &st));
  CHECK(st.st_size == 6 * GIB + 65536, "size after fallocate beyond 6 GiB %lld", (long long)st.st_size);
  OK(ftruncate(fd, 4 * GIB + 1));
  OK(fstat(fd, &st));
  CHECK(st.st_size == 4 * GIB + 1, "ftruncate to 4 GiB + 1: %lld", (long long)st.st_size);
  CHECK(pread(fd, r, 100, 4 * GIB) == 1 && r[0] == w[4096], "last byte after ftruncate");
  /* copy_file_range at offsets beyond 4 GiB */
  int out;
  OK(out = open(P("around4g-copy"), O_RDWR | O_CREAT | O_TRUNC, 0644));
  loff_t io = at, oo = 5 * GIB;
  ssize_t k = copy_file_range(fd, &io, out, &oo, 4097, 0);
  CHECK(k > 0, "copy_file_range beyond 4 GiB: %s", strerror(errno));
  CHECK(pread(out, r, (size_t)k, 5 * GIB) == k && memcmp(r, w, (size_t)k) == 0, "copied data beyond 4 GiB");
  close(out);
  close(fd);
  return 0;
}

static int t_big_direct_io(void) {
  size_t n = 8 << 20;
  void *buf;
  CHECK(posix_memalign(&buf, 4096, n) == 0, "posix_memalign");
  unsigned char *b = buf;
  for (size_t i = 0; i < n; i++) b[i] = pat(i ^ (i >> 12));
  int fd;
  OK(fd = open(P("bigdirect"), O_RDWR | O_CREAT | O_TRUNC | O_DIRECT, 0644));
  CHECK(pwrite(fd, buf, n, 0) == (ssize_t)n, "8 MiB O_DIRECT write: %s", strerror(errno));
  memset(buf, 0, n);
  CHECK(pread(fd, buf, n, 0) == (ssize_t)n, "8 MiB O_DIRECT read: %s", strerror(errno));
  for (size_t i = 0; i < n; i++) CHECK(b[i] == pat(i ^ (i >> 12)), "byte %zu differs", i);
  /* O_DIRECT read over a hole and past EOF */
  OK(ftruncate(fd, n + (1 << 20)));
  CHECK(pread(fd, buf, 1 << 20, n) == 1 << 20, "hole read");
  for (size_t i = 0; i < (1 << 20); i++) CHECK(b[i] == 0, "hole byte %zu not zero", i);
  CHECK(pread(fd, buf, 4096, n + (2 << 20)) == 0, "O_DIRECT read past EOF");
  close(fd);
  free(buf);
  return 0;
}

static int t_parallel_workers(void) {
  enum { KIDS = 8, FILES = 120 };
  OK(mkdir(P("par"), 0755));
  OK(write_file(P("par/shared"), "shared", 6, 0644));
  pid_t pids[KIDS];
  for (int k = 0; k < KIDS; k++) {
    pids[k] = fork();
    if (pids[k] == 0) {
      char dir[64];
      snprintf(dir, sizeof dir, "par/k%d", k);
      if (mkdir(P("%s", dir), 0755) < 0) _exit(10);
      char data[3000];
      for (int i = 0; i < FILES; i++) {
        int len = 100 + (i * 37 + k * 11) % 2900;
        for (int j = 0; j < len; j++) data[j] = (char)(j + i + k);
        if (write_file(P("%s/f%d", dir, i), data, (size_t)len, 0644) < 0) _exit(11);
        struct stat st;
        if (stat(P("par/shared"), &st) < 0 || st.st_size != 6) _exit(12);
        if (i % 3 == 0 && link(P("%s/f%d", dir, i), P("par/k%d-l%d", k, i)) < 0) _exit(13);
      }
      for (int i = 0; i < FILES; i++) {
        int len = 100 + (i * 37 + k * 11) % 2900;
        char got[3000];
        if (read_file(P("%s/f%d", dir, i), got, sizeof got) != len) _exit(14);
        for (int j = 0; j < len; j++) if (got[j] != (char)(j + i + k)) _exit(15);
        if (rename(P("%s/f%d", dir, i), P("%s/g%d", dir, i)) < 0) _exit(16);
        if (i % 2 == 0 && unlink(P("%s/g%d", dir, i)) < 0) _exit(17);
      }
      for (int i = 0; i < FILES; i += 3) {
        struct stat st;
        if (stat(P("par/k%d-l%d", k, i), &st) < 0 || st.st_nlink != (i % 2 == 0 ? 1u : 2u)) _exit(18);
      }
      _exit(0);
    }
  }
  int bad = 0, why = 0;
  for (int k = 0; k < KIDS; k++) {
    int st;
    waitpid(pids[k], &st, 0);
    if (!WIFEXITED(st) || WEXITSTATUS(st) != 0) { bad++; why = WIFEXITED(st) ? WEXITSTATUS(st) : 100 + WTERMSIG(st); }
  }
  CHECK(!bad, "%d of %d workers failed (last code %d)", bad, KIDS, why);
  for (int k = 0; k < KIDS; k++) {
    DIR *d = opendir(P("par/k%d", k));
    CHECK(d, "opendir k%d", k);
    int c = 0;
    struct dirent *e;
    while ((e = readdir(d))) if (e->d_name[0] == 'g') c++;
    closedir(d);
    CHECK(c == FILES / 2, "k%d has %d files, expected %d", k, c, FILES / 2);
  }
  return 0;
}

static int t_rm_rf_while_reading(void) {
  enum { N = 1500 };
  OK(mkdir(P("rmrf"), 0755));
  for (int i = 0; i < N; i++) {
    int fd = open(P("rmrf/victim-%05d-padding-padding-padding", i), O_WRONLY | O_CREAT | O_EXCL, 0644);
    CHECK(fd >= 0, "create %d: %s", i, strerror(errno));
    close(fd);
  }
  static unsigned char seen[N];
  memset(seen, 0, sizeof seen);
  int removed = 0, rounds = 0;
  for (;;) {
    int fd;
    OK(fd = open(P("rmrf"), O_RDONLY | O_DIRECTORY));
    char buf[1024];
    int got = 0;
    for (;;) {
      long n = syscall(SYS_getdents64, fd, buf, sizeof buf);
      CHECK(n >= 0, "getdents64: %s", strerror(errno));
      if (n == 0) break;
      for (long p = 0; p < n;) {
        struct { uint64_t ino; int64_t off; unsigned short reclen; unsigned char type; char name[]; } *d = (void *)(buf + p);
        p += d->reclen;
        if (d->name[0] == '.') continue;
        int i;
        CHECK(sscanf(d->name, "victim-%d-", &i) == 1 && i >= 0 && i < N, "unexpected name %s", d->name);
        CHECK(!seen[i], "%s listed again after it was unlinked (round %d)", d->name, rounds);
        seen[i] = 1;
        CHECK(unlinkat(fd, d->name, 0) == 0, "unlink %s: %s", d->name, strerror(errno));
        removed++;
        got++;
      }
    }
    close(fd);
    rounds++;
    if (!got) break;
    CHECK(rounds < 20, "still not empty after %d rounds", rounds);
  }
  CHECK(removed == N, "removed %d of %d", removed, N);
  OK(rmdir(P("rmrf")));
  return 0;
}

static int t_readdir_while_adding(void) {
  OK(mkdir(P("grow"), 0755));
  for (int i = 0; i < 300; i++) OK(write_file(P("grow/old-%04d", i), "", 0, 0644));
  int fd;
  OK(fd = open(P("grow"), O_RDONLY | O_DIRECTORY));
  static unsigned char seen[300];
  memset(seen, 0, sizeof seen);
  char buf[600];
  int added = 0;
  for (;;) {
    long n = syscall(SYS_getdents64, fd, buf, sizeof buf);
    CHECK(n >= 0, "getdents64: %s", strerror(errno));
    if (n == 0) break;
    for (long p = 0; p < n;) {
      struct { uint64_t ino; int64_t off; unsigned short reclen; unsigned char type; char name[]; } *d = (void *)(buf + p);
      p += d->reclen;
      int i;
      if (sscanf(d->name, "old-%d", &i) == 1) {
        CHECK(i >= 0 && i < 300 && !seen[i], "old entry %s seen twice", d->name);
        seen[i] = 1;
      }
    }
    if (added < 300) {
      for (int j = 0; j < 10; j++, added++) OK(write_file(P("grow/new-%04d", added), "", 0, 0644));
    }
  }
  close(fd);
  for (int i = 0; i < 300; i++) CHECK(seen[i], "old entry %d never listed", i);
  return 0;
}

static int t_o_creat_dangling_symlink(void) {
  OK(symlink("dangle-target", P("dangle")));
  ERRNO(open(P("dangle"), O_WRONLY | O_CREAT | O_EXCL, 0644), EEXIST);
  int fd;
  OK(fd = open(P("dangle"), O_WRONLY | O_CREAT, 0644));
  OK(write(fd, "via link", 8));
  close(fd);
  CHECK(file_is(P("dangle-target"), "via link"), "the target was not created through the link");
  struct stat st;
  OK(lstat(P("dangle"), &st));
  CHECK(S_ISLNK(st.st_mode), "the link was replaced");
  return 0;
}

static int t_symlink_4095(void) {
  char target[4096];
  for (int i = 0; i < 4095; i++) target[i] = (i % 100 == 99) ? '/' : 'x';
  target[4095] = 0;
  OK(symlink(target, P("sym4095")));
  char buf[4200];
  ssize_t n = readlink(P("sym4095"), buf, sizeof buf);
  CHECK(n == 4095 && memcmp(buf, target, 4095) == 0, "readlink of a 4095-byte target -> %zd", n);
  return 0;
}

static int t_utimensat_symlink_nofollow(void) {
  OK(write_file(P("tl-target"), "", 0, 0644));
  OK(symlink("tl-target", P("tl-link")));
  struct timespec ts[2] = {{1111111111, 1}, {1222222222, 2}};
  OK(utimensat(AT_FDCWD, P("tl-link"), ts, AT_SYMLINK_NOFOLLOW));
  struct stat st;
  OK(lstat(P("tl-link"), &st));
  CHECK(st.st_mtim.tv_sec == 1222222222 && st.st_mtim.tv_nsec == 2, "link mtime %lld.%09ld",
        (long long)st.st_mtim.tv_sec, st.st_mtim.tv_nsec);
  OK(stat(P("tl-target"), &st));
  CHECK(st.st_mtim.tv_sec != 1222222222, "the target's times were changed instead");
  return 0;
}

static int t_mknod_char_device(void) {
  OK(mknod(P("hc-null"), S_IFCHR | 0666, makedev(1, 3)));
  struct stat st;
  OK(stat(P("hc-null"), &st));
  CHECK(S_ISCHR(st.st_mode) && st.st_rdev == makedev(1, 3), "mode %o rdev %lx", st.st_mode, (unsigned long)st.st_rdev);
  int fd;
  OK(fd = open(P("hc-null"), O_WRONLY));
  OK(write(fd, "x", 1));
  close(fd);
  return 0;
}

static int t_stat_host_file(void) {
  struct stat st;
  OK(stat(P("../fixture/data.bin"), &st));
  printf("@@VAL fixture_stat %llu %lld %lld %lld.%09ld %o %u %u@@\n", (unsigned long long)st.st_ino,
         (long long)st.st_size, (long long)st.st_blocks, (long long)st.st_mtim.tv_sec, st.st_mtim.tv_nsec,
         st.st_mode & 07777, st.st_uid, st.st_gid);
  return 0;
}

static int t_user_in_setgid_and_truncate(void) {
  if (access(P("users"), F_OK) < 0) OK(mkdir(P("users"), 0777));
  OK(chmod(P("users"), 0777));
  OK(mkdir(P("users/grp"), 0775));
  OK(chown(P("users/grp"), 0, USER_ID));
  OK(chmod(P("users/grp"), 02777));
  pid_t pid = fork();
  if (pid == 0) {
    if (setresgid(2000, 2000, 2000) < 0 || setresuid(USER_ID, USER_ID, USER_ID) < 0) _exit(2);
    if (write_file(P("users/grp/uf"), "0123456789", 10, 0644) < 0) _exit(3);
    if (truncate(P("users/grp/uf"), 4) < 0) _exit(4); /* setattr by path as the owner */
    if (chown(P("users/grp/uf"), -1, 2000) < 0) _exit(5); /* chgrp to own group */
    int fd = open(P("users/grp/uf"), O_RDWR);
    if (fd < 0 || ftruncate(fd, 2) < 0) _exit(6);
    close(fd);
    _exit(0);
  }
  int st;
  OK(waitpid(pid, &st, 0));
  CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0, "user child failed with %d", WIFEXITED(st) ? WEXITSTATUS(st) : -1);
  struct stat s;
  OK(stat(P("users/grp/uf"), &s));
  CHECK(s.st_uid == USER_ID && s.st_gid == 2000 && s.st_size == 2, "owner %u:%u size %lld", s.st_uid, s.st_gid,
        (long long)s.st_size);
  return 0;
}

/* files the host verifies (names hc-*; see functional.test.ts) */
static int t_host_files(void) {
  size_t n = (1 << 20) + 123;
  unsigned char *b = malloc(n);
  for (size_t i = 0; i < n; i++) b[i] = pat(i);
  OK(write_file(P("hc-pattern.bin"), b, n, 0644));
  free(b);
  int fd;
  OK(fd = open(P("hc-sparse"), O_WRONLY | O_CREAT | O_TRUNC, 0644));
  CHECK(pwrite(fd, "END", 3, 5 * GIB) == 3, "sparse write");
  close(fd);
  OK(write_file(P("hc-rename-src"), "renamed", 7, 0644));
  OK(rename(P("hc-rename-src"), P("hc-renamed")));
  OK(write_file(P("hc-ex-a"), "A", 1, 0644));
  OK(write_file(P("hc-ex-b"), "B", 1, 0644));
  OK(syscall(SYS_renameat2, AT_FDCWD, P("hc-ex-a"), AT_FDCWD, P("hc-ex-b"), RENAME_EXCHANGE));
  OK(write_file(P("hc-link-a"), "L", 1, 0644));
  OK(link(P("hc-link-a"), P("hc-link-b")));
  OK(symlink("hc-renamed", P("hc-symlink")));
  OK(write_file(P("hc-append"), "abc", 3, 0644));
  OK(fd = open(P("hc-append"), O_WRONLY | O_APPEND));
  OK(write(fd, "def", 3));
  close(fd);
  OK(fd = open(P("hc-punch"), O_RDWR | O_CREAT | O_TRUNC, 0644));
  b = malloc(1 << 20);
  memset(b, 0xaa, 1 << 20);
  CHECK(pwrite_all(fd, b, 1 << 20, 0) == 0, "write punch");
  free(b);
  OK(fallocate(fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, 256 << 10, 256 << 10));
  close(fd);
  return 0;
}

/* ---- driver ------------------------------------------------------------------------------- */

struct check { const char *name; int (*fn)(void); };

static const struct check checks[] = {
  {"open_excl", t_open_excl},
  {"open_trunc", t_open_trunc},
  {"open_append", t_open_append},
  {"open_directory_on_file", t_open_directory_on_file},
  {"open_nofollow_symlink", t_open_nofollow},
  {"open_errors", t_open_errors},
  {"o_direct", t_o_direct},
  {"pread_pwrite", t_pread_pwrite},
  {"pwrite_beyond_4g", t_pwrite_beyond_4g},
  {"read_past_eof", t_read_past_eof},
  {"ftruncate_grow_shrink", t_ftruncate},
  {"fallocate", t_fallocate},
  {"fallocate_punch_hole", t_punch_hole},
  {"seek_data_hole", t_seek_data_hole},
  {"fsync_fdatasync", t_fsync},
  {"coherent_second_fd", t_write_other_fd_coherent},
  {"rename_replace_file", t_rename_replace_file},
  {"rename_dirs", t_rename_dirs},
  {"renameat2_noreplace", t_renameat2_noreplace},
  {"renameat2_exchange", t_renameat2_exchange},
  {"link_unlink_open", t_link_unlink_open},
  {"unlink_open_fstat", t_unlink_open_fstat},
  {"symlink_readlink", t_symlink},
  {"symlink_long_target", t_symlink_long},
  {"readdir_2000", t_readdir_2000},
  {"seekdir_telldir", t_seekdir_telldir},
  {"readdir_types", t_readdir_types},
  {"mkdir_rmdir", t_mkdir_rmdir},
  {"long_names", t_long_names},
  {"chmod_special_bits", t_chmod},
  {"chown", t_chown},
  {"utimensat_ns", t_utimensat},
  {"statfs", t_statfs},
  {"statx", t_statx},
  {"mkfifo_mknod_socket", t_mkfifo_mknod},
  {"fifo_io", t_fifo_io},
  {"unix_socket_bind", t_unix_socket_bind},
  {"mmap_shared", t_mmap_shared},
  {"exec_from_share", t_mmap_private_exec},
  {"o_tmpfile", t_o_tmpfile},
  {"copy_file_range", t_copy_file_range},
  {"locks_flock_posix", t_locks},
  {"xattr_unsupported", t_xattr_unsupported},
  {"xattr_user", t_xattr_user}, /* only when named */
  {"user_create_owned", t_user_create},
  {"user_permission_denied", t_user_denied},
  {"access_faccessat", t_access},
  {"setgid_dir_inherit", t_setgid_dir_inherit},
  {"write_clears_setuid", t_write_clears_setuid},
  {"inode_stable_after_forget", t_inode_stable_after_drop_caches},
  {"open_close_many", t_open_close_many},
  {"cwd_relative_at", t_cwd_relative},
  {"offsets_around_4g", t_offsets_around_4g},
  {"big_direct_io", t_big_direct_io},
  {"parallel_workers", t_parallel_workers},
  {"rm_rf_while_reading", t_rm_rf_while_reading},
  {"readdir_while_adding", t_readdir_while_adding},
  {"o_creat_dangling_symlink", t_o_creat_dangling_symlink},
  {"symlink_4095", t_symlink_4095},
  {"utimensat_symlink_nofollow", t_utimensat_symlink_nofollow},
  {"mknod_char_device", t_mknod_char_device},
  {"stat_host_file", t_stat_host_file},
  {"user_setgid_truncate_chgrp", t_user_in_setgid_and_truncate},
  {"host_files", t_host_files},
};

static void sanitize(char *s) {
  for (; *s; s++)
    if (*s == '@' || *s == '\n' || *s == '\r' || (unsigned char)*s < 0x20) *s = ' ';
}

/* ---- single commands (`fsprobe --do OP ARGS`) -------------------------------------------------
 * For guest scripts that need a syscall busybox has no applet for (xattrs, POSIX ACLs) or an exact
 * errno. Prints one line: the result ("ok", a value, a list) or "E:<ERRNO NAME>" (e.g. E:EPERM);
 * exits 0 on success, 1 on a failed syscall, 2 on a usage error.
 *   create PATH MODE        open(O_CREAT|O_EXCL|O_WRONLY, MODE octal), under the caller's umask
 *   mkdir PATH MODE         mkdir under the caller's umask
 *   chown PATH UID GID      lchown
 *   stat PATH               "UID:GID:MODE" (mode in octal, permission bits)
 *   read PATH               open(O_RDONLY) and read: "ok"
 *   write PATH              open(O_WRONLY|O_APPEND), write one byte: "ok"
 *   setx PATH NAME VALUE    setxattr (VALUE "hex:0102…": those bytes);  getx PATH NAME: the value;  rmx PATH NAME: removexattr
 *   listx PATH              the names, comma-separated, sorted as the file system gave them
 *   setacl PATH access|default ACL   set system.posix_acl_*: ACL is "u::rw-,u:1100:r--,g::r--,m::r--,o::---"
 *   getacl PATH access|default       the ACL in the same form (entries in the stored order)
 * An ACL xattr is {u32 version 2} then {u16 tag, u16 perm, u32 id} per entry (linux/posix_acl_xattr.h),
 * entries ordered by tag, then id.
 */
#define ACL_XATTR_VERSION 2
static const struct { char c; int named; unsigned short tag; } acl_tags[] = {
  {'u', 0, 0x01}, {'u', 1, 0x02}, {'g', 0, 0x04}, {'g', 1, 0x08}, {'m', 0, 0x10}, {'o', 0, 0x20},
};

static int errout(void) {
  const char *n = strerrorname_np(errno);
  printf("E:%s\n", n ? n : "?");
  return 1;
}

static int acl_perm(const char *p) {
  if (strlen(p) != 3) return -1;
  int v = 0;
  if (p[0] == 'r') v |= 4; else if (p[0] != '-') return -1;
  if (p[1] == 'w') v |= 2; else if (p[1] != '-') return -1;
  if (p[2] == 'x') v |= 1; else if (p[2] != '-') return -1;
  return v;
}

struct acl_ent { unsigned short tag, perm; unsigned int id; };

static int acl_cmp(const void *a, const void *b) {
  const struct acl_ent *x = a, *y = b;
  if (x->tag != y->tag) return x->tag < y->tag ? -1 : 1;
  return x->id < y->id ? -1 : x->id > y->id;
}

/* "u::rw-,u:1100:r--,..." into buf: the xattr's length, or -1 */
static int acl_encode(const char *text, unsigned char *buf, size_t cap) {
  struct acl_ent e[64];
  int n = 0;
  char *copy = strdup(text), *save = NULL;
  for (char *it = strtok_r(copy, ",", &save); it; it = strtok_r(NULL, ",", &save)) {
    char t = it[0];
    char *c1 = strchr(it, ':');
    char *c2 = c1 ? strchr(c1 + 1, ':') : NULL;
    if (!c1 || !c2 || c1 != it + 1 || n == 64) return -1;
    *c2 = 0;
    int named = c2 > c1 + 1;
    int perm = acl_perm(c2 + 1);
    if (perm < 0) return -1;
    size_t k = 0;
    while (k < sizeof acl_tags / sizeof acl_tags[0] && !(acl_tags[k].c == t && acl_tags[k].named == named)) k++;
    if (k == sizeof acl_tags / sizeof acl_tags[0]) return -1;
    e[n].tag = acl_tags[k].tag;
    e[n].perm = (unsigned short)perm;
    e[n].id = named ? (unsigned int)strtoul(c1 + 1, NULL, 10) : 0xffffffffu;
    n++;
  }
  free(copy);
  qsort(e, n, sizeof e[0], acl_cmp);
  if (4 + (size_t)n * 8 > cap) return -1;
  uint32_t v = ACL_XATTR_VERSION;
  memcpy(buf, &v, 4);
  for (int i = 0; i < n; i++) {
    memcpy(buf + 4 + i * 8, &e[i].tag, 2);
    memcpy(buf + 6 + i * 8, &e[i].perm, 2);
    memcpy(buf + 8 + i * 8, &e[i].id, 4);
  }
  return 4 + n * 8;
}

static void acl_print(const unsigned char *buf, ssize_t len) {
  uint32_t v;
  memcpy(&v, buf, 4);
  if (len < 4 || v != ACL_XATTR_VERSION || (len - 4) % 8) {
    printf("bad-acl(len %zd)\n", len);
    return;
  }
  for (ssize_t at = 4; at < len; at += 8) {
    unsigned short tag, perm;
    unsigned int id;
    memcpy(&tag, buf + at, 2);
    memcpy(&perm, buf + at + 2, 2);
    memcpy(&id, buf + at + 4, 4);
    char t = '?';
    int named = 0;
    for (size_t k = 0; k < sizeof acl_tags / sizeof acl_tags[0]; k++)
      if (acl_tags[k].tag == tag) t = acl_tags[k].c, named = acl_tags[k].named;
    char ids[16] = "";
    if (named) snprintf(ids, sizeof ids, "%u", id);
    printf("%s%c:%s:%c%c%c", at > 4 ? "," : "", t, ids, perm & 4 ? 'r' : '-', perm & 2 ? 'w' : '-', perm & 1 ? 'x' : '-');
  }
  printf("\n");
}

static const char *acl_name(const char *which) {
  return !strcmp(which, "access") ? "system.posix_acl_access" : !strcmp(which, "default") ? "system.posix_acl_default" : NULL;
}

static int do_cmd(int argc, char **argv) {
  static unsigned char buf[65536];
  const char *op = argv[0];
#define ARGS(n) do { if (argc != (n) + 1) { fprintf(stderr, "fsprobe --do %s: %d arguments\n", op, (n)); return 2; } } while (0)
  if (!strcmp(op, "create")) {
    ARGS(2);
    int fd = open(argv[1], O_CREAT | O_EXCL | O_WRONLY, (mode_t)strtoul(argv[2], NULL, 8));
    if (fd < 0) return errout();
    close(fd);
  } else if (!strcmp(op, "mkdir")) {
    ARGS(2);
    if (mkdir(argv[1], (mode_t)strtoul(argv[2], NULL, 8)) < 0) return errout();
  } else if (!strcmp(op, "chown")) {
    ARGS(3);
    if (lchown(argv[1], (uid_t)strtoul(argv[2], NULL, 10), (gid_t)strtoul(argv[3], NULL, 10)) < 0) return errout();
  } else if (!strcmp(op, "stat")) {
    ARGS(1);
    struct stat st;
    if (lstat(argv[1], &st) < 0) return errout();
    printf("%u:%u:%o\n", st.st_uid, st.st_gid, st.st_mode & 07777);
    return 0;
  } else if (!strcmp(op, "read") || !strcmp(op, "write")) {
    ARGS(1);
    int w = op[0] == 'w';
    int fd = open(argv[1], w ? O_WRONLY | O_APPEND : O_RDONLY);
    if (fd < 0) return errout();
    char c = 'x';
    ssize_t r = w ? write(fd, &c, 1) : read(fd, buf, sizeof buf);
    if (r < 0) return errout();
    close(fd);
  } else if (!strcmp(op, "mmap")) {
    /* a shared, writable mapping of an existing file: its first byte becomes 'M' through the mapping,
       written back with msync (a direct-I/O file on virtiofs refuses this, ENODEV, unless the daemon
       negotiated FUSE_DIRECT_IO_ALLOW_MMAP) */
    ARGS(1);
    int fd = open(argv[1], O_RDWR);
    if (fd < 0) return errout();
    char *m = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    if (m == MAP_FAILED) {
      int e = errno;
      close(fd);
      errno = e;
      return errout();
    }
    m[0] = 'M';
    int r = msync(m, 4096, MS_SYNC);
    int e = errno;
    munmap(m, 4096);
    close(fd);
    if (r < 0) {
      errno = e;
      return errout();
    }
  } else if (!strcmp(op, "setx")) {
    ARGS(3);
    const char *v = argv[3];
    size_t len = strlen(v);
    if (!strncmp(v, "hex:", 4)) {
      /* binary values (a security.capability blob): hex digits after "hex:" */
      len = 0;
      for (const char *h = v + 4; h[0] && h[1] && len < sizeof buf; h += 2) {
        unsigned x;
        if (sscanf(h, "%2x", &x) != 1) return 2;
        buf[len++] = (unsigned char)x;
      }
      v = (const char *)buf;
    }
    if (setxattr(argv[1], argv[2], v, len, 0) < 0) return errout();
  } else if (!strcmp(op, "getx")) {
    ARGS(2);
    ssize_t n = getxattr(argv[1], argv[2], buf, sizeof buf - 1);
    if (n < 0) return errout();
    buf[n] = 0;
    printf("%s\n", (char *)buf);
    return 0;
  } else if (!strcmp(op, "rmx")) {
    ARGS(2);
    if (removexattr(argv[1], argv[2]) < 0) return errout();
  } else if (!strcmp(op, "listx")) {
    ARGS(1);
    ssize_t n = listxattr(argv[1], (char *)buf, sizeof buf);
    if (n < 0) return errout();
    for (ssize_t at = 0; at < n; at += strlen((char *)buf + at) + 1) printf("%s%s", at ? "," : "", (char *)buf + at);
    printf("\n");
    return 0;
  } else if (!strcmp(op, "setacl")) {
    ARGS(3);
    const char *name = acl_name(argv[2]);
    int len = name ? acl_encode(argv[3], buf, sizeof buf) : -1;
    if (len < 0) {
      fprintf(stderr, "fsprobe --do setacl: bad ACL or kind\n");
      return 2;
    }
    if (setxattr(argv[1], name, buf, (size_t)len, 0) < 0) return errout();
  } else if (!strcmp(op, "getacl")) {
    ARGS(2);
    const char *name = acl_name(argv[2]);
    if (!name) return 2;
    ssize_t n = getxattr(argv[1], name, buf, sizeof buf);
    if (n < 0) return errout();
    acl_print(buf, n);
    return 0;
  } else {
    fprintf(stderr, "fsprobe --do: unknown operation %s\n", op);
    return 2;
  }
#undef ARGS
  printf("ok\n");
  return 0;
}

int main(int argc, char **argv) {
  if (argc == 2 && !strcmp(argv[1], "--exit-42")) return 42;
  if (argc >= 3 && !strcmp(argv[1], "--do")) return do_cmd(argc - 2, argv + 2);
  if (argc < 2) {
    fprintf(stderr, "usage: fsprobe DIR [check...]\n");
    return 126;
  }
  base = argv[1];
  setvbuf(stdout, NULL, _IOLBF, 0);
  umask(0);
  if (mkdir(base, 0755) < 0 && errno != EEXIST) {
    printf("@@STEP probe_setup FAIL mkdir %s: %s@@\n", base, strerror(errno));
    return 125;
  }
  detail = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
  if (detail == MAP_FAILED) return 125;
  int failed = 0;
  for (size_t i = 0; i < sizeof checks / sizeof checks[0]; i++) {
    const struct check *c = &checks[i];
    if (argc > 2) {
      int want = 0;
      for (int k = 2; k < argc; k++) want |= !strcmp(argv[k], c->name);
      if (!want) continue;
    } else if (!strcmp(c->name, "xattr_user")) {
      continue;
    }
    memset(detail, 0, DETAIL_SIZE + 1);
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    fflush(stdout);
    pid_t pid = fork();
    if (pid < 0) {
      printf("@@STEP %s FAIL fork: %s@@\n", c->name, strerror(errno));
      failed++;
      continue;
    }
    if (pid == 0) {
      alarm(120);
      int r = c->fn();
      fflush(stdout);
      _exit(r ? 1 : 0);
    }
    int st = 0;
    while (waitpid(pid, &st, 0) < 0 && errno == EINTR) {}
    clock_gettime(CLOCK_MONOTONIC, &t1);
    long ms = (t1.tv_sec - t0.tv_sec) * 1000 + (t1.tv_nsec - t0.tv_nsec) / 1000000;
    sanitize(detail);
    if (WIFEXITED(st) && WEXITSTATUS(st) == 0) {
      printf("@@STEP %s ok@@ (%ld ms)\n", c->name, ms);
    } else {
      failed++;
      if (WIFSIGNALED(st))
        printf("@@STEP %s FAIL killed by signal %d%s%s@@\n", c->name, WTERMSIG(st), detail[0] ? ": " : "", detail);
      else
        printf("@@STEP %s FAIL %s@@\n", c->name, detail[0] ? detail : "failed");
    }
  }
  printf("@@PROBE_DONE failed=%d@@\n", failed);
  return failed > 125 ? 125 : failed;
}
