"""Kernel backends behind one registry: pick conv2d / maxpool2d implementations by name.

    backend = get_backend("tuned")      # "loop", "numpy", "numba" or "tuned"
    out = backend.conv2d_forward(x, w, b, stride=1, pad=0)
    backend.offers("conv2d_relu_maxpool2d_forward")   # True where the backend fuses the layer

Every backend honours the contract of contract.KERNELS (loop.py has the math): each backend
module defines its functions under the contract's names, and the registry wraps each in its
row's argument check. A module that lacks a kernel names the backend that serves it
(KERNELS_SERVED_BY, tuned -> numba); an optional kernel it lacks is None.
"""

import functools
import importlib
import inspect
from dataclasses import dataclass
from types import MappingProxyType

from fcnn.kernels import contract

BACKENDS = {
    "loop": "fcnn.kernels.loop",
    "numpy": "fcnn.kernels.vectorized",
    "numba": "fcnn.kernels.numba_backend",
    "tuned": "fcnn.kernels.tuned",
}
# The backends from fastest to slowest on the presets: default_backend() picks the first that runs here.
FASTEST_FIRST = ("tuned", "numba", "numpy", "loop")


class BackendUnavailableError(ValueError):
    """A known backend that cannot run here (numba not importable)."""


@dataclass(frozen=True)
class Backend:
    """The kernels of one backend, by the contract's names, each checking its arguments first.

    backend.conv2d_forward(...) is the kernel; backend.offers(name) says whether the backend
    has it (an optional kernel it lacks is None); served_by[name] names the backend whose code
    runs it (tuned's maxpool2d_forward is numba's); unchecked(name) is the kernel without its
    argument check, for a caller that has checked every argument by the contract's rules already.
    """

    name: str
    kernels: MappingProxyType
    served_by: MappingProxyType
    implementations: MappingProxyType

    def __getattr__(self, name):
        kernels = self.__dict__.get("kernels", {})
        if name in kernels:
            return kernels[name]
        raise AttributeError(f"backend {self.__dict__.get('name')!r} has no kernel {name!r}; "
                             f"the contract's kernels: {sorted(contract.KERNELS)}")

    def __dir__(self):
        return [*super().__dir__(), *self.kernels]

    def offers(self, name):
        """Whether backend.<name> runs here: a contract kernel that is not None."""
        return self.kernels.get(name) is not None

    def unchecked(self, name):
        """backend.<name> without the contract's argument check (fcnn.optim checks whole trees,
        naming the path, and then steps every array: the check per array would repeat it)."""
        getattr(self, name)  # the registry's error for a name the contract does not have
        return self.implementations[name]


def _checked(name, row, implementation):
    """implementation behind the contract row's check: kernel(*args) = implementation(*row.check(*args))."""

    def kernel(*args, **kwargs):
        return implementation(*row.check(*args, **kwargs))

    kernel.__name__ = kernel.__qualname__ = name
    kernel.__doc__ = row.doc
    kernel.__signature__ = inspect.signature(row.check)
    return kernel


@functools.cache
def get_backend(name):
    """The Backend called `name`; ValueError for an unknown or unavailable one."""
    if name not in BACKENDS:
        raise ValueError(f"backend must be one of {sorted(BACKENDS)}; got {name!r}")
    try:
        module = importlib.import_module(BACKENDS[name])
    except ImportError as error:
        raise BackendUnavailableError(
            f"backend {name!r} is unavailable: {error}. Install it (pip install numba) "
            f"or use backend='numpy'"
        ) from error
    server = vars(module).get("KERNELS_SERVED_BY")
    kernels, served_by, implementations = {}, {}, {}
    for kernel, row in contract.KERNELS.items():
        implementation = vars(module).get(kernel)
        if implementation is not None:
            kernels[kernel], served_by[kernel] = _checked(kernel, row, implementation), name
        elif server is not None:
            kernels[kernel], served_by[kernel] = getattr(get_backend(server), kernel), server
            implementation = get_backend(server).implementations[kernel]
        elif not row.optional:
            raise NotImplementedError(f"backend {name!r} ({BACKENDS[name]}) has no {kernel} and names no backend that serves it")
        kernels.setdefault(kernel, None)
        implementations[kernel] = implementation
    return Backend(name, MappingProxyType(kernels), MappingProxyType(served_by), MappingProxyType(implementations))


def available_backends():
    """Names of the backends that can run here, e.g. ['loop', 'numpy', 'numba']."""
    available = []
    for name in BACKENDS:
        try:
            get_backend(name)
        except BackendUnavailableError:
            continue
        available.append(name)
    return available


def default_backend():
    """The fastest backend that can run here (the first available in FASTEST_FIRST)."""
    available = available_backends()
    return next(name for name in FASTEST_FIRST if name in available)
