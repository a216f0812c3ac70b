"""use_one_blas_thread(): run NumPy's matrix products (BLAS) on one thread, for the whole process.

A process-wide setting, so the library never makes it on its own: call it once at the start of
a training script or benchmark, beside fcnn.keep_freed_memory(), as scripts/train_mnist.py and
bench/ do.
"""

from threadpoolctl import ThreadpoolController


def use_one_blas_thread():
    """Limit every BLAS library NumPy has loaded (OpenBLAS, MKL, ...) to one thread from now on.

    The network's matrices are small: a second BLAS thread buys nothing, and on a busy 2-core
    machine each multi-threaded call can wait a whole OS time slice (~4 ms) for a BLAS thread
    that was put to sleep; numba's kernels need no second pool spinning beside them either.
    Measured: docs/performance.md. Undo with threadpoolctl (ThreadpoolController().limit).

    Returns True if a BLAS library was found and limited, False if NumPy has none loaded.
    """
    controller = ThreadpoolController()
    blas = controller.select(user_api="blas")
    if not blas.lib_controllers:
        return False
    blas.limit(limits=1)
    return True
