"""keep_freed_memory(): let a training process reuse freed memory instead of faulting in fresh pages.

A process-wide setting of the C allocator, so the library never makes it on import: call it once
at the start of a training script or benchmark, as scripts/train_mnist.py and bench/ do.
"""

import ctypes
import ctypes.util

# glibc's mallopt parameters (malloc.h).
M_TRIM_THRESHOLD = -1
M_MMAP_THRESHOLD = -3
# Older glibc versions refuse an mmap threshold above half the heap size, 32 MiB on 64-bit (2.36 does not).
MMAP_THRESHOLD_BYTES = 32 * 2**20
TRIM_THRESHOLD_BYTES = 128 * 2**20


def keep_freed_memory():
    """Keep freed blocks up to 32 MiB in the heap instead of handing them back to the OS.

    By default glibc serves every block of 128 KiB and more (most activations of a batch) with
    a fresh mmap and unmaps it on free, so every training step faults in hundreds of new zeroed
    pages; with this setting a step reuses the blocks the previous step freed, and resident
    memory stays the same. Measured gains: docs/performance.md.

    Returns True if applied, False where the C library is not glibc (then it does nothing).
    """
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    return bool(mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES)) and bool(mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD_BYTES))
