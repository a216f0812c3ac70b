"""fcnn.keep_freed_memory, the one process-wide setting the README tells users to call."""

import platform
import subprocess
import sys

import pytest

import fcnn

# How many blocks glibc serves by mmap while a 16 MiB array is alive, in a fresh interpreter
# (the allocator's state is per process, and glibc raises its own mmap threshold each time it
# unmaps a block), after keep_freed_memory() if the argument says so.
COUNT_MMAPPED_BLOCKS = """
import ctypes, sys, numpy as np, fcnn
class MallInfo2(ctypes.Structure):
    _fields_ = [(name, ctypes.c_size_t) for name in
                ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks", "fordblks", "keepcost")]
libc = ctypes.CDLL("libc.so.6")
libc.mallinfo2.restype = MallInfo2
if sys.argv[1] == "keep":
    assert fcnn.keep_freed_memory() is True
baseline = libc.mallinfo2().hblks
block = np.ones(2**24, np.uint8)
print(libc.mallinfo2().hblks - baseline)
"""


def mmapped_blocks_for_16_mib(setting):
    result = subprocess.run([sys.executable, "-c", COUNT_MMAPPED_BLOCKS, setting],
                            capture_output=True, text=True, check=True)
    return int(result.stdout)


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="mallopt and mallinfo2 are glibc's")
def test_keep_freed_memory_keeps_large_blocks_in_the_heap():
    assert mmapped_blocks_for_16_mib("default") == 1
    assert mmapped_blocks_for_16_mib("keep") == 0
    assert "keep_freed_memory" in fcnn.__all__
