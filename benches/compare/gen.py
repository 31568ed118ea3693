#!/usr/bin/env python3
"""Deterministic workload generators for benches/compare/run.sh.

Every generator takes a seed (or uses a fixed one) and sets fixed mtimes, so two invocations
on two machines produce byte-identical trees with identical metadata: a benchmark that
compares tools is only fair if every tool sees the same input, run after run.

Subcommands (all sizes in bytes):
  smallfiles DIR COUNT DIRS          COUNT files of 0-8 KiB spread over DIRS directories
  fakekernel DIR COUNT               a source-like text tree (stand-in for the kernel in --quick)
  mutate DIR APPEND DELETE ADD       append to / delete / add regular files, in place
  bigfile PATH SIZE                  SIZE bytes of incompressible data
  edit PATH COUNT LEN                overwrite COUNT scattered LEN-byte blocks, in place
  insert SRC DST                     DST = SRC with one byte inserted in the middle
  texttree SRC DST BYTES             DST = the first BYTES of SRC's regular files, sorted order
"""

import os
import random
import shutil
import sys

# 2024-01-01T00:00:00Z: the mtime of every generated entry, so re-generation is bit-identical.
BASE_MTIME = 1704067200
# Changed entries get a later fixed mtime: same-size edits must not pass rsync's quick check.
CHANGED_MTIME = BASE_MTIME + 86400
CHUNK = 1 << 20

WORDS = (
    "static int struct void return if else for while unsigned long char const size_t "
    "u32 u64 NULL err goto out unlock lock mutex spin_lock kfree kmalloc GFP_KERNEL "
    "dev_err pr_info EINVAL ENOMEM sizeof break case switch default inline bool true false "
    "ret buf len offset page list_head container_of rcu_read_lock atomic_t"
).split()


def text_blob(rng, size):
    """Source-like text (lines of C-ish tokens), exactly `size` bytes."""
    out = []
    n = 0
    while n < size:
        indent = "\t" * rng.randint(0, 3)
        line = indent + " ".join(rng.choice(WORDS) for _ in range(rng.randint(1, 10))) + ";\n"
        out.append(line)
        n += len(line)
    return "".join(out).encode()[:size]


def set_tree_mtimes(root, mtime):
    """Directories' mtimes change as we fill them: pin them (deepest first) to `mtime`."""
    for dirpath, _dirs, _files in os.walk(root, topdown=False):
        os.utime(dirpath, (mtime, mtime))


def write_file(path, data, mtime=BASE_MTIME):
    with open(path, "wb") as f:
        f.write(data)
    os.utime(path, (mtime, mtime))


def smallfiles(root, count, ndirs):
    rng = random.Random(0x5EED_0001)
    dirs = []
    # Two levels (ndirs/10 top dirs of 10 each) so the walk is not a single flat directory.
    top = max(1, ndirs // 10)
    for i in range(ndirs):
        d = os.path.join(root, f"t{i % top:03d}", f"d{i:04d}")
        os.makedirs(d, exist_ok=True)
        dirs.append(d)
    for i in range(count):
        size = rng.randint(0, 8192)
        # Half text, half binary: content matters for -z and for delta, not for copying.
        data = text_blob(rng, size) if i % 2 else rng.randbytes(size)
        write_file(os.path.join(dirs[i % ndirs], f"f{i:05d}.dat"), data)
    set_tree_mtimes(root, BASE_MTIME)


def fakekernel(root, count):
    """A small tree shaped like a kernel checkout: nested dirs, .c/.h/Kconfig, a few symlinks."""
    rng = random.Random(0x5EED_0002)
    subsystems = ["arch/x86/kernel", "arch/arm64/mm", "drivers/net/ethernet", "drivers/gpu/drm",
                  "fs/ext4", "fs/btrfs", "include/linux", "kernel/sched", "mm", "net/ipv4",
                  "Documentation/admin-guide", "scripts", "tools/perf/util", "sound/core"]
    for i in range(count):
        d = os.path.join(root, subsystems[i % len(subsystems)])
        os.makedirs(d, exist_ok=True)
        ext = (".c", ".h", ".rst", "")[i % 4]
        # Kernel-like size spread: mostly a few KiB, some tens of KiB.
        size = int(rng.lognormvariate(8.5, 1.2)) % (256 * 1024)
        write_file(os.path.join(d, f"file{i:05d}{ext}"), text_blob(rng, size))
    for name, target in (("include/linux/link.h", "file00006.h"), ("scripts/dangling", "nowhere")):
        os.symlink(target, os.path.join(root, name))
        os.utime(os.path.join(root, name), (BASE_MTIME, BASE_MTIME), follow_symlinks=False)
    write_file(os.path.join(root, "Makefile"), text_blob(rng, 2000))
    set_tree_mtimes(root, BASE_MTIME)


def regular_files(root):
    out = []
    for dirpath, dirs, files in os.walk(root):
        dirs.sort()
        for f in sorted(files):
            p = os.path.join(dirpath, f)
            if os.path.isfile(p) and not os.path.islink(p):
                out.append(p)
    return out


def mutate(root, n_append, n_delete, n_add):
    """The (c) workload's changes: deterministic picks from the sorted file list."""
    rng = random.Random(0x5EED_0003)
    files = regular_files(root)
    picks = rng.sample(files, n_append + n_delete + n_add)
    touched_dirs = set()
    for p in picks[:n_append]:
        with open(p, "ab") as f:
            f.write(text_blob(rng, rng.randint(1, 4096)))
        os.utime(p, (CHANGED_MTIME, CHANGED_MTIME))
    for p in picks[n_append:n_append + n_delete]:
        os.unlink(p)
        touched_dirs.add(os.path.dirname(p))
    for i, p in enumerate(picks[n_append + n_delete:]):
        d = os.path.dirname(p)
        write_file(os.path.join(d, f"zz-bench-added-{i:03d}.c"),
                   text_blob(rng, rng.randint(0, 16384)), CHANGED_MTIME)
        touched_dirs.add(d)
    for d in touched_dirs:
        os.utime(d, (CHANGED_MTIME, CHANGED_MTIME))


def bigfile(path, size):
    rng = random.Random(0x5EED_0004)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as f:
        left = size
        while left:
            n = min(CHUNK, left)
            f.write(rng.randbytes(n))
            left -= n
    os.utime(path, (BASE_MTIME, BASE_MTIME))
    os.utime(os.path.dirname(path), (BASE_MTIME, BASE_MTIME))


def edit(path, count, length):
    """Overwrite `count` blocks spread evenly (with jitter) over the file."""
    rng = random.Random(0x5EED_0005)
    size = os.path.getsize(path)
    stride = size // count
    with open(path, "r+b") as f:
        for i in range(count):
            off = i * stride + rng.randint(0, max(0, stride - length))
            f.seek(off)
            f.write(rng.randbytes(length))
    os.utime(path, (CHANGED_MTIME, CHANGED_MTIME))


def insert(src, dst):
    size = os.path.getsize(src)
    mid = size // 2
    os.makedirs(os.path.dirname(dst), exist_ok=True)
    with open(src, "rb") as fi, open(dst, "wb") as fo:
        left = mid
        while left:
            buf = fi.read(min(CHUNK, left))
            fo.write(buf)
            left -= len(buf)
        fo.write(b"\x2a")
        shutil.copyfileobj(fi, fo, CHUNK)
    os.utime(dst, (CHANGED_MTIME, CHANGED_MTIME))
    os.utime(os.path.dirname(dst), (BASE_MTIME, BASE_MTIME))


def texttree(src, dst, budget):
    total = 0
    for p in regular_files(src):
        if total >= budget:
            break
        rel = os.path.relpath(p, src)
        out = os.path.join(dst, rel)
        os.makedirs(os.path.dirname(out), exist_ok=True)
        shutil.copy2(p, out)
        total += os.path.getsize(p)
    set_tree_mtimes(dst, BASE_MTIME)


def main(argv):
    if len(argv) < 2:
        sys.exit(__doc__)
    cmd, args = argv[1], argv[2:]
    table = {
        "smallfiles": lambda: smallfiles(args[0], int(args[1]), int(args[2])),
        "fakekernel": lambda: fakekernel(args[0], int(args[1])),
        "mutate": lambda: mutate(args[0], int(args[1]), int(args[2]), int(args[3])),
        "bigfile": lambda: bigfile(args[0], int(args[1])),
        "edit": lambda: edit(args[0], int(args[1]), int(args[2])),
        "insert": lambda: insert(args[0], args[1]),
        "texttree": lambda: texttree(args[0], args[1], int(args[2])),
    }
    if cmd not in table:
        sys.exit(f"gen.py: unknown generator `{cmd}`\n{__doc__}")
    table[cmd]()


if __name__ == "__main__":
    main(sys.argv)
