/**
 * AF_UNIX address limits (Linux include/uapi/linux/un.h: `char sun_path[108]`). A leaf module.
 */
/** The longest socket path bind(2)/connect(2) accept: sun_path's 108 bytes less the terminating NUL. */
export const UNIX_PATH_MAX = 107;
