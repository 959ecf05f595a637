// The one list of the addon's functions: X(Method, jsName) declares NativeAddon::Method (addon.h) and
// registers it as `jsName` on the exports (addon.cc). The JS side declares the same names in
// src/native.ts (`Native` and NATIVE_FUNCTIONS); test/unit/abi-drift checks that both sides agree.
//
// Adding a function: one line here, its body in the file of its group, and its TypeScript declaration.

#ifndef VIRTIOFSD_NATIVE_FUNCTIONS_H
#define VIRTIOFSD_NATIVE_FUNCTIONS_H

#define NATIVE_FUNCTIONS(X)                      \
  /* sockets.cc: the vhost-user socket */       \
  X(ListenUnix, listenUnix)                      \
  X(AcceptUnix, acceptUnix)                      \
  X(ConnectUnix, connectUnix)                    \
  X(IsListeningUnixStream, isListeningUnixStream) \
  X(PeerPid, peerPid)                            \
  X(RecvMsg, recvMsg)                            \
  X(SendMsg, sendMsg)                            \
  /* wait.cc: fd watchers, eventfd, poll, epoll */ \
  X(WatchFd, watchFd)                            \
  X(Eventfd, eventfd)                            \
  X(EventfdWrite, eventfdWrite)                  \
  X(EventfdRead, eventfdRead)                    \
  X(Poll, poll)                                  \
  X(EpollCreate, epollCreate)                    \
  X(EpollAdd, epollAdd)                          \
  X(EpollWait, epollWait)                        \
  /* memory.cc: guest memory mappings */        \
  X(MemoryAddress, memoryAddress)                \
  X(MapFixed, mapFixed)                          \
  X(UnmapFixed, unmapFixed)                      \
  X(MapShared, mapShared)                        \
  X(UnmapShared, unmapShared)                    \
  X(MemfdCreate, memfdCreate)                    \
  X(SealShrink, sealShrink)                      \
  /* sigbus.cc: guest RAM truncated under us */ \
  X(SigbusGuard, sigbusGuard)                    \
  X(SigbusFaults, sigbusFaults)                  \
  /* fs.cc: calls on a directory fd and a name */ \
  X(Openat2, openat2)                            \
  X(OpenProcFd, openProcFd)                      \
  X(StatAt, statAt)                              \
  X(Mkdirat, mkdirat)                            \
  X(Mknodat, mknodat)                            \
  X(Unlinkat, unlinkat)                          \
  X(Renameat2, renameat2)                        \
  X(Linkat, linkat)                              \
  X(Symlinkat, symlinkat)                        \
  X(Readlinkat, readlinkat)                      \
  X(Fchmodat, fchmodat)                          \
  X(Fchownat, fchownat)                          \
  X(Utimensat, utimensat)                        \
  X(Faccessat, faccessat)                        \
  X(SetProcFd, setProcFd)                        \
  X(ProcFdLink, procFdLink)                      \
  X(ProcSelfRead, procSelfRead)                  \
  X(ProcFdCount, procFdCount)                    \
  /* io.cc: calls on an open fd, and zero-copy I/O against the window */ \
  X(Close, close)                                \
  X(Dup, dup)                                    \
  X(FcntlGetFl, fcntlGetFl)                      \
  X(Ftruncate, ftruncate)                        \
  X(Fallocate, fallocate)                        \
  X(CopyFileRange, copyFileRange)                \
  X(Fsync, fsync)                                \
  X(Syncfs, syncfs)                              \
  X(Fstatfs, fstatfs)                            \
  X(Getdents64, getdents64)                      \
  X(GetdentsFuse, getdentsFuse)                  \
  X(Lseek, lseek)                                \
  X(LseekBig, lseekBig)                          \
  X(Pread, pread)                                \
  X(Pwrite, pwrite)                              \
  X(SetWindow, setWindow)                        \
  X(PreadvWin, preadvWin)                        \
  X(PwritevWin, pwritevWin)                      \
  /* xattr.cc: extended attributes */           \
  X(Fgetxattr, fgetxattr)                        \
  X(Fsetxattr, fsetxattr)                        \
  X(SetxattrProc, setxattrProc)                  \
  X(Flistxattr, flistxattr)                      \
  X(Fremovexattr, fremovexattr)                  \
  /* process.cc: fd limit, this thread's credentials, exit */ \
  X(RaiseNofile, raiseNofile)                    \
  X(SetNofile, setNofile)                        \
  X(SetCreds, setCreds)                          \
  X(ExitNow, exitNow)                            \
  /* sandbox.cc: namespaces, the new root, capabilities */ \
  X(SandboxSpawn, sandboxSpawn)                  \
  X(WaitChild, waitChild)                        \
  X(EnterRoot, enterRoot)                        \
  X(DropCaps, dropCaps) \
  /* seccomp.cc: the system call filter */      \
  X(SeccompInstall, seccompInstall)

#endif
