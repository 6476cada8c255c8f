// Errno numbers (Linux, x86_64 and asm-generic) that the ring can meet, each with the kernel's meaning.
//
// Owns: the number -> name table. Promises: `errnoName` names every number in the table and gives a stable,
// number-carrying name (`ERRNO_<n>`) for anything else, so an unexpected errno is never silently renamed.

export const EPERM = 1; // Operation not permitted: io_uring_disabled sysctl, a seccomp filter, or flock on a bad fd kind.
export const ENOENT = 2; // No such file or directory.
export const EINTR = 4; // Interrupted system call: a signal arrived while io_uring_enter waited; retry.
export const EIO = 5; // I/O error: the device failed a write or a flush; the page cache state is now unknown.
export const ENXIO = 6; // No such device or address: the ring is being torn down.
export const EBADF = 9; // Bad file descriptor: closed, or not open for the operation (a write to an O_RDONLY fd).
export const EAGAIN = 11; // Try again (== EWOULDBLOCK): no memory for a request right now, or a lock is held.
export const EWOULDBLOCK = EAGAIN; // Operation would block: flock(LOCK_NB) found the lock held.
export const ENOMEM = 12; // Out of memory: kernel allocation, or RLIMIT_MEMLOCK for ring memory before Linux 5.12.
export const EACCES = 13; // Permission denied.
export const EFAULT = 14; // Bad address: a buffer or params pointer the kernel cannot read or write.
export const EBUSY = 16; // Device or resource busy: CQ overflow backlog, io_uring_enter cannot submit now; retry.
export const EEXIST = 17; // File exists: io_uring_enter from a task other than the SINGLE_ISSUER submitter.
export const ENODEV = 19; // No such device: the file (or its file system) does not support the operation.
export const EISDIR = 21; // Is a directory.
export const EINVAL = 22; // Invalid argument: bad SQE, bad flags, unaligned O_DIRECT buffer, bad entries.
export const ENFILE = 23; // File table overflow: the system is out of file descriptors.
export const EMFILE = 24; // Too many open files: this process is out of file descriptors.
export const EFBIG = 27; // File too large: past RLIMIT_FSIZE or the file system's maximum file size.
export const ENOSPC = 28; // No space left on device.
export const ESPIPE = 29; // Illegal seek: a positioned write to a pipe or socket.
export const EROFS = 30; // Read-only file system.
export const EPIPE = 32; // Broken pipe.
export const ENOLCK = 37; // No record locks available: the kernel could not allocate a lock record.
export const ENOSYS = 38; // Function not implemented: the kernel has no io_uring (older than 5.1, or compiled out).
export const EBADR = 53; // Invalid request descriptor: CQ overflow entries were lost (no IORING_FEAT_NODROP).
export const ETIME = 62; // Timer expired.
export const EOVERFLOW = 75; // Value too large for defined data type: offset + length overflows loff_t.
export const EBADFD = 77; // File descriptor in bad state: the ring is disabled (IORING_SETUP_R_DISABLED).
export const EOPNOTSUPP = 95; // Operation not supported: an opcode this file or kernel does not handle.
export const EDQUOT = 122; // Disk quota exceeded.
export const ECANCELED = 125; // Operation canceled: a linked request whose predecessor failed or was short.

const names = new Map<number, string>([
  [EPERM, 'EPERM'],
  [ENOENT, 'ENOENT'],
  [EINTR, 'EINTR'],
  [EIO, 'EIO'],
  [ENXIO, 'ENXIO'],
  [EBADF, 'EBADF'],
  [EAGAIN, 'EAGAIN'],
  [ENOMEM, 'ENOMEM'],
  [EACCES, 'EACCES'],
  [EFAULT, 'EFAULT'],
  [EBUSY, 'EBUSY'],
  [EEXIST, 'EEXIST'],
  [ENODEV, 'ENODEV'],
  [EISDIR, 'EISDIR'],
  [EINVAL, 'EINVAL'],
  [ENFILE, 'ENFILE'],
  [EMFILE, 'EMFILE'],
  [EFBIG, 'EFBIG'],
  [ENOSPC, 'ENOSPC'],
  [ESPIPE, 'ESPIPE'],
  [EROFS, 'EROFS'],
  [EPIPE, 'EPIPE'],
  [ENOLCK, 'ENOLCK'],
  [ENOSYS, 'ENOSYS'],
  [EBADR, 'EBADR'],
  [ETIME, 'ETIME'],
  [EOVERFLOW, 'EOVERFLOW'],
  [EBADFD, 'EBADFD'],
  [EOPNOTSUPP, 'EOPNOTSUPP'],
  [EDQUOT, 'EDQUOT'],
  [ECANCELED, 'ECANCELED'],
]);

/** 'EIO' for 5; 'ERRNO_<n>' for a number outside the table. */
export function errnoName(errno: number): string {
  return names.get(errno) ?? `ERRNO_${errno}`;
}
