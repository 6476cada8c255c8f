#!/usr/bin/env bash
# Installs the Debian packages the tests and benchmarks use, when they are missing and we may install them:
#   xfsprogs  xfs_io (file system shutdown = simulated power loss) and mkfs.xfs, for the crash tests;
#   e2fsprogs mkfs.ext4, for the crash tests;
#   fio       the disk's own limits, printed beside the benchmarks;
#   fuse3     a FUSE file system that injects I/O errors, for the crash tests.
# Without root or apt-get it installs nothing and says so: the tests that need these then skip, printing why.
set -u
need=()
command -v xfs_io >/dev/null 2>&1 || need+=(xfsprogs)
command -v mkfs.ext4 >/dev/null 2>&1 || need+=(e2fsprogs)
command -v fio >/dev/null 2>&1 || need+=(fio)
command -v fusermount3 >/dev/null 2>&1 || need+=(fuse3 libfuse3-dev)
((${#need[@]})) || exit 0
if [[ $(id -u) -ne 0 ]] || ! command -v apt-get >/dev/null 2>&1; then
  echo "system-deps: not root or no apt-get; not installing ${need[*]} (tests that need them will skip)"
  exit 0
fi
echo "system-deps: installing ${need[*]}"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq >/dev/null && apt-get install -y -qq "${need[@]}" >/dev/null || echo "system-deps: apt-get failed; tests that need ${need[*]} will skip"
exit 0
