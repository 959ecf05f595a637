/**
 * File-type and set-id bits of st_mode (Linux include/uapi/linux/stat.h; the same on every Linux architecture)
 * and the d_type values of struct linux_dirent64 (DT_*, = S_IFMT >> 12). A leaf module: it imports
 * nothing. The native addon's constants table is checked against it (test/unit/abi-drift).
 */
export const S_IFMT = 0o170000;
export const S_IFSOCK = 0o140000;
export const S_IFLNK = 0o120000;
export const S_IFREG = 0o100000;
export const S_IFBLK = 0o060000;
export const S_IFDIR = 0o040000;
export const S_IFCHR = 0o020000;
export const S_IFIFO = 0o010000;
/** the set-user-ID and set-group-ID bits of st_mode */
export const S_ISUID = 0o4000;
export const S_ISGID = 0o2000;
