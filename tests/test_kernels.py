"""The kernel contract, in every backend: gradients against finite differences, backends
against each other and against independent computations (scipy, reshape-max), ties,
dtypes, purity and argument checks."""

import os
import re
import subprocess
import sys

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.signal import correlate2d

from fcnn.gradcheck import numerical_gradient, relative_error
from fcnn.kernels import BACKENDS as REGISTRY
from fcnn.kernels import BackendUnavailableError, available_backends, get_backend, loop

from conv_cases import conv_arrays

# Every backend of the registry that runs here: a new backend is tested as soon as it is registered.
BACKENDS = available_backends()
# The backends held to loop.py, the reference, on random shapes.
FAST_BACKENDS = [name for name in BACKENDS if name != "loop"]
needs_numba = pytest.mark.skipif("numba" not in BACKENDS, reason="numba is not installed")
# Finite differences in float64 agree with a correct gradient to ~1e-9 here; a wrong one
# (a transposed kernel, a missed tap) is off by order 1.
GRAD_TOLERANCE = 1e-6

# (N, C, H, W, F, KH, KW, stride, pad): batch 1, several channels, non-square kernels
# and inputs, stride 2, padding larger than needed.
CONV_CASES = [
    (1, 1, 5, 5, 1, 3, 3, 1, 0),
    (2, 3, 7, 6, 4, 3, 2, 2, 1),
    (1, 2, 6, 7, 3, 2, 3, 1, 2),
    (2, 2, 8, 8, 2, 5, 5, 2, 2),
    (3, 1, 4, 9, 2, 1, 4, 3, 0),
]
# (N, C, H, W, size, stride): stride None = size; stride < size overlaps; odd sizes leave a rim.
POOL_CASES = [
    (1, 1, 4, 4, 2, None),
    (2, 3, 7, 6, 2, 2),
    (2, 2, 7, 7, 3, 2),
    (1, 2, 5, 6, 2, 1),
    (2, 1, 9, 8, 3, 3),
]


def pool_input(case, dtype=np.float64, seed=0):
    # A permutation: no ties, and every gap is far larger than the finite-difference step.
    N, C, H, W, size, stride = case
    rng = np.random.default_rng(seed)
    x = rng.permutation(N * C * H * W).reshape(N, C, H, W) / 10.0
    return x.astype(dtype), size, stride


def correlate_reference(x, w, b, stride, pad):
    """Convolution layer forward via scipy.signal.correlate2d, one (image, filter, channel) at a time."""
    xpad = np.pad(x, ((0, 0), (0, 0), (pad, pad), (pad, pad)))
    out = []
    for image in xpad:
        maps = [sum(correlate2d(image[c], kernel[c], mode="valid") for c in range(len(image))) + bias
                for kernel, bias in zip(w, b)]
        out.append(np.stack(maps)[:, ::stride, ::stride])
    return np.stack(out)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("case", CONV_CASES, ids=str)
def test_conv2d_gradients_match_finite_differences(backend, case):
    kernels = get_backend(backend)
    x, w, b, stride, pad = conv_arrays(case)
    dout = np.random.default_rng(1).standard_normal(kernels.conv2d_forward(x, w, b, stride, pad).shape)

    def loss():  # L = sum(dout * out), so dL/dout = dout
        return float(np.sum(dout * kernels.conv2d_forward(x, w, b, stride, pad)))

    dx, dw, db = kernels.conv2d_backward(dout, x, w, stride, pad)
    assert relative_error(dx, numerical_gradient(loss, x)) < GRAD_TOLERANCE
    assert relative_error(dw, numerical_gradient(loss, w)) < GRAD_TOLERANCE
    assert relative_error(db, numerical_gradient(loss, b)) < GRAD_TOLERANCE


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("case", CONV_CASES, ids=str)
def test_conv2d_backward_weights_is_conv2d_backward_without_dx(backend, case):
    # Stride-1 cases take numba's fast path, the others its general kernel.
    kernels = get_backend(backend)
    x, w, b, stride, pad = conv_arrays(case)
    dout = np.random.default_rng(1).standard_normal(kernels.conv2d_forward(x, w, b, stride, pad).shape)
    _, dw, db = kernels.conv2d_backward(dout, x, w, stride, pad)
    weights_only = kernels.conv2d_backward_weights(dout, x, w, stride, pad)
    np.testing.assert_allclose(weights_only[0], dw, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(weights_only[1], db, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("case", POOL_CASES, ids=str)
def test_maxpool2d_gradient_matches_finite_differences(backend, case):
    kernels = get_backend(backend)
    x, size, stride = pool_input(case)
    dout = np.random.default_rng(1).standard_normal(kernels.maxpool2d_forward(x, size, stride).shape)

    def loss():
        return float(np.sum(dout * kernels.maxpool2d_forward(x, size, stride)))

    dx = kernels.maxpool2d_backward(dout, x, size, stride)
    assert relative_error(dx, numerical_gradient(loss, x)) < GRAD_TOLERANCE


def transposed_kernel_gradient(dout, x, w, stride=1, pad=0):
    """The original script's bug: dw with its two spatial axes swapped."""
    dx, dw, db = get_backend("loop").conv2d_backward(dout, x, w, stride, pad)
    return dx, dw.transpose(0, 1, 3, 2), db


def test_gradient_check_catches_a_transposed_kernel_gradient():
    # Square 3x3 kernels, so the transposed dw even has the right shape: only the numbers
    # can give it away, and the finite-difference check must see them.
    x, w, b, stride, pad = conv_arrays(CONV_CASES[0])
    forward = get_backend("loop").conv2d_forward
    dout = np.random.default_rng(1).standard_normal(forward(x, w, b).shape)
    _, dw_wrong, _ = transposed_kernel_gradient(dout, x, w)
    numeric = numerical_gradient(lambda: float(np.sum(dout * forward(x, w, b))), w)
    assert dw_wrong.shape == w.shape
    assert relative_error(dw_wrong, numeric) > 100 * GRAD_TOLERANCE


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("case", CONV_CASES, ids=str)
def test_conv2d_forward_matches_scipy_correlate2d(backend, case):
    x, w, b, stride, pad = conv_arrays(case)
    out = get_backend(backend).conv2d_forward(x, w, b, stride, pad)
    np.testing.assert_allclose(out, correlate_reference(x, w, b, stride, pad), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("backend", BACKENDS)
def test_maxpool2d_forward_matches_reshape_max(backend):
    x = np.random.default_rng(0).standard_normal((3, 2, 8, 6))
    expected = x.reshape(3, 2, 4, 2, 3, 2).max(axis=(3, 5))
    np.testing.assert_array_equal(get_backend(backend).maxpool2d_forward(x, 2), expected)


def first_argmax_backward(dout, x, size, stride):
    """Max-pool backward written independently: np.argmax returns the first maximum in row-major order."""
    dx = np.zeros_like(x)
    N, C, H_out, W_out = dout.shape
    for n, c, i, j in np.ndindex(N, C, H_out, W_out):
        window = x[n, c, i * stride:i * stride + size, j * stride:j * stride + size]
        di, dj = np.unravel_index(np.argmax(window), window.shape)
        dx[n, c, i * stride + di, j * stride + dj] += dout[n, c, i, j]
    return dx


@pytest.mark.parametrize("backend", BACKENDS)
def test_maxpool2d_tie_sends_the_whole_gradient_to_the_first_maximum(backend):
    x = np.array([[[[1.0, 1.0, 0.0, 2.0],
                    [1.0, 1.0, 2.0, 2.0],
                    [3.0, 0.0, 5.0, 4.0],
                    [3.0, 3.0, 4.0, 5.0]]]])
    dout = np.array([[[[10.0, 20.0], [30.0, 40.0]]]])
    expected = np.array([[[[10.0, 0.0, 0.0, 20.0],
                           [0.0, 0.0, 0.0, 0.0],
                           [30.0, 0.0, 40.0, 0.0],
                           [0.0, 0.0, 0.0, 0.0]]]])
    np.testing.assert_array_equal(get_backend(backend).maxpool2d_backward(dout, x, 2), expected)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("size, stride", [(2, 2), (2, 1), (3, 2), (3, 1)])
def test_maxpool2d_ties_and_overlaps_match_an_independent_backward(backend, size, stride):
    # Values from {0, 1, 2}: nearly every window has ties; overlapping windows accumulate.
    rng = np.random.default_rng(size * 10 + stride)
    x = rng.integers(0, 3, (2, 2, 7, 7)).astype(np.float64)
    dout = rng.standard_normal(get_backend("loop").maxpool2d_forward(x, size, stride).shape)
    dx = get_backend(backend).maxpool2d_backward(dout, x, size, stride)
    np.testing.assert_allclose(dx, first_argmax_backward(dout, x, size, stride), rtol=1e-12, atol=1e-12)


conv_shapes = st.tuples(
    st.integers(1, 3), st.integers(1, 3), st.integers(1, 9), st.integers(1, 9),  # N, C, H, W
    st.integers(1, 3), st.integers(1, 4), st.integers(1, 4),                     # F, KH, KW
    st.integers(1, 3), st.integers(0, 2),                                        # stride, pad
).filter(lambda s: s[5] <= s[2] + 2 * s[8] and s[6] <= s[3] + 2 * s[8])


@settings(max_examples=40, deadline=None)
@given(case=conv_shapes, dtype=st.sampled_from([np.float32, np.float64]))
def test_conv2d_backends_agree_on_random_shapes(case, dtype):
    x, w, b, stride, pad = conv_arrays(case, dtype)
    reference = get_backend("loop")
    out = reference.conv2d_forward(x, w, b, stride, pad)
    dout = np.random.default_rng(2).standard_normal(out.shape).astype(dtype)
    grads = reference.conv2d_backward(dout, x, w, stride, pad)
    tolerance = dict(rtol=1e-5, atol=1e-5) if dtype == np.float32 else dict(rtol=1e-12, atol=1e-12)
    for name in FAST_BACKENDS:
        kernels = get_backend(name)
        np.testing.assert_allclose(kernels.conv2d_forward(x, w, b, stride, pad), out, **tolerance)
        for got, expected in zip(kernels.conv2d_backward(dout, x, w, stride, pad), grads):
            np.testing.assert_allclose(got, expected, **tolerance)
        for got, expected in zip(kernels.conv2d_backward_weights(dout, x, w, stride, pad), grads[1:]):
            np.testing.assert_allclose(got, expected, **tolerance)


pool_shapes = st.tuples(
    st.integers(1, 3), st.integers(1, 3), st.integers(1, 9), st.integers(1, 9),  # N, C, H, W
    st.integers(1, 4), st.one_of(st.none(), st.integers(1, 3)),                  # size, stride
).filter(lambda s: s[4] <= min(s[2], s[3]))


@settings(max_examples=40, deadline=None)
@given(case=pool_shapes, dtype=st.sampled_from([np.float32, np.float64]), ties=st.booleans())
def test_maxpool2d_backends_agree_on_random_shapes(case, dtype, ties):
    N, C, H, W, size, stride = case
    rng = np.random.default_rng(3)
    x = (rng.integers(0, 3, (N, C, H, W)) if ties else rng.standard_normal((N, C, H, W))).astype(dtype)
    reference = get_backend("loop")
    out = reference.maxpool2d_forward(x, size, stride)
    dout = rng.standard_normal(out.shape).astype(dtype)
    dx = reference.maxpool2d_backward(dout, x, size, stride)
    for name in FAST_BACKENDS:
        kernels = get_backend(name)
        np.testing.assert_array_equal(kernels.maxpool2d_forward(x, size, stride), out)
        np.testing.assert_allclose(kernels.maxpool2d_backward(dout, x, size, stride), dx, rtol=1e-6, atol=1e-6)


def all_calls(kernels, dtype):
    """Every kernel of a backend applied to one set of arguments: (name, function, args)."""
    x, w, b, stride, pad = conv_arrays(CONV_CASES[1], dtype)
    conv_out = kernels.conv2d_forward(x, w, b, stride, pad)
    pool_x, size, pool_stride = pool_input(POOL_CASES[2], dtype)
    pool_out = kernels.maxpool2d_forward(pool_x, size, pool_stride)
    return [
        ("conv2d_forward", kernels.conv2d_forward, (x, w, b, stride, pad)),
        ("conv2d_backward", kernels.conv2d_backward, (np.ones_like(conv_out), x, w, stride, pad)),
        ("conv2d_backward_weights", kernels.conv2d_backward_weights, (np.ones_like(conv_out), x, w, stride, pad)),
        ("maxpool2d_forward", kernels.maxpool2d_forward, (pool_x, size, pool_stride)),
        ("maxpool2d_backward", kernels.maxpool2d_backward, (np.ones_like(pool_out), pool_x, size, pool_stride)),
    ]


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_dtype_in_is_dtype_out(backend, dtype):
    for name, function, args in all_calls(get_backend(backend), dtype):
        result = function(*args)
        for array in result if isinstance(result, tuple) else (result,):
            assert array.dtype == dtype, name


@pytest.mark.parametrize("backend", BACKENDS)
def test_kernels_do_not_modify_their_inputs(backend):
    for name, function, args in all_calls(get_backend(backend), np.float64):
        copies = [np.copy(a) if isinstance(a, np.ndarray) else a for a in args]
        function(*args)
        for given_arg, copy in zip(args, copies):
            np.testing.assert_array_equal(given_arg, copy, err_msg=name)


def test_kernels_accept_non_contiguous_views():
    x, w, b, stride, pad = conv_arrays(CONV_CASES[1])
    view = np.asfortranarray(x)[:, :, ::-1][:, :, ::-1]
    for backend in BACKENDS:
        np.testing.assert_allclose(get_backend(backend).conv2d_forward(view, w, b, stride, pad),
                                   get_backend("loop").conv2d_forward(x, w, b, stride, pad), rtol=1e-12)


@needs_numba
def test_numba_backend_compiles_the_loop_source_itself():
    from fcnn.kernels import compiled_loop as compiled

    kernels = ("conv2d_forward", "conv2d_backward_weights", "conv2d_backward_input",
               "maxpool2d_forward", "maxpool2d_backward")
    for name in kernels:
        assert getattr(compiled, name).py_func.__code__ is getattr(loop, name).__code__
    # conv2d_backward is loop.py's own composition of the two compiled halves, run by Python.
    assert compiled.conv2d_backward.__code__ is loop.conv2d_backward.__code__
    assert compiled.conv2d_backward.__globals__["conv2d_backward_weights"] is compiled.conv2d_backward_weights
    assert compiled.conv2d_backward.__globals__["conv2d_backward_input"] is compiled.conv2d_backward_input


@needs_numba
def test_numba_fast_paths_inline_the_loop_source_itself():
    from fcnn.kernels import compiled_loop as compiled

    fast_paths = {"conv2d_forward_stride1": "conv2d_forward",
                  "conv2d_backward_weights_stride1": "conv2d_backward_weights",
                  "conv2d_backward_input_stride1": "conv2d_backward_input",
                  "maxpool2d_forward_2x2": "maxpool2d_forward", "maxpool2d_backward_2x2": "maxpool2d_backward"}
    for fast_path, kernel in fast_paths.items():
        inlined = getattr(compiled, fast_path).py_func.__globals__[kernel]
        assert inlined.py_func.__code__ is getattr(loop, kernel).__code__, fast_path
        assert inlined.targetoptions["inline"] == "always", fast_path


@needs_numba
def test_numba_cache_written_from_cached_kernels_loads_in_the_next_process(tmp_path):
    # numba#8578: a cached function that calls a parallel one, compiled while that callee came
    # from the disk cache, crashed the next process that loaded it (segfault). The fast paths
    # inline their kernel instead; here one is recompiled beside a cache of everything else.
    script = (
        "import numpy as np\n"
        "from fcnn.kernels import get_backend, loop\n"
        "x = np.arange(2 * 3 * 6 * 6, dtype=np.float32).reshape(2, 3, 6, 6) % 7\n"
        "w = np.ones((4, 3, 3, 3), np.float32); b = np.zeros(4, np.float32)\n"
        "numba = get_backend('numba').conv2d_forward(x, w, b, 1, 1)\n"
        "assert np.array_equal(numba, loop.conv2d_forward(x, w, b, 1, 1))\n"
    )
    environment = {**os.environ, "NUMBA_CACHE_DIR": str(tmp_path)}

    def run():
        return subprocess.run([sys.executable, "-c", script], env=environment, capture_output=True, text=True)

    first = run()
    assert first.returncode == 0, f"the process that compiles everything failed: {first.stderr}"
    fast_path_files = list(tmp_path.rglob("*conv2d_forward_stride1*"))
    assert fast_path_files, "the fast path left no cache file to remove"
    for path in fast_path_files:
        path.unlink()
    for attempt in ("recompiles the fast path", "loads everything from the cache"):
        result = run()
        assert result.returncode == 0, f"the process that {attempt} failed ({result.returncode}): {result.stderr}"


@needs_numba
def test_numba_cache_names_carry_the_compile_options_and_their_values():
    # numba's disk cache keys on the function's name, not on its options: a kernel compiled
    # with other options must never load this one's cached code.
    from fcnn.kernels import compiled_loop as compiled

    variants = [{}, {"parallel": True}, {"parallel": True, "fastmath": True}, {"parallel": True, "fastmath": {"contract"}}]
    names = {compiled._compile(loop.maxpool2d_forward, compiled._namespace, **options).py_func.__qualname__
             for options in variants}
    assert len(names) == len(variants)


def test_registry_lists_the_backends_that_run_here_in_its_order():
    assert {"loop", "numpy"} <= set(BACKENDS) <= set(REGISTRY)
    assert BACKENDS == [name for name in REGISTRY if name in BACKENDS]
    assert [get_backend(name).name for name in BACKENDS] == BACKENDS


def test_unknown_backend_is_refused_by_name():
    with pytest.raises(ValueError, match=rf"backend must be one of {re.escape(str(sorted(REGISTRY)))}; got 'cuda'"):
        get_backend("cuda")


def test_without_numba_the_other_backends_still_work():
    # A fresh interpreter on purpose: what is tested is that fcnn imports and runs when numba
    # cannot be imported at all.
    script = (
        "import sys; sys.modules['numba'] = None\n"
        "import numpy as np, fcnn\n"
        "from fcnn.kernels import BackendUnavailableError, get_backend\n"
        "print(fcnn.available_backends())\n"
        "try:\n"
        "    get_backend('numba')\n"
        "except BackendUnavailableError as error:\n"
        "    print(error)\n"
        "params = fcnn.init('seed')\n"
        "print(fcnn.predict(params, np.zeros((2, 784), np.float32), 'seed').shape)\n"
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    lines = result.stdout.splitlines()
    assert "numba" not in lines[0] and "'loop', 'numpy'" in lines[0]
    assert "backend 'numba' is unavailable" in lines[1] and "pip install numba" in lines[1]
    assert lines[2] == "(2,)"
    assert issubclass(BackendUnavailableError, ValueError)


BAD_CONV_ARGUMENTS = [
    # (what is wrong, x shape, w shape, x dtype, stride, pad, message pattern)
    ("x rank", (1, 5, 5), (1, 1, 3, 3), np.float64, 1, 0, r"x must have 4 dimensions; got shape \(1, 5, 5\)"),
    ("channels", (1, 2, 5, 5), (1, 3, 3, 3), np.float64, 1, 0, r"w must have x's 2 input channels"),
    ("kernel too big", (1, 1, 3, 3), (1, 1, 5, 5), np.float64, 1, 0, r"kernel 5x5 is larger than the padded input 3x3"),
    ("integer x", (1, 1, 5, 5), (1, 1, 3, 3), np.uint8, 1, 0, r"x must be float32 or float64; got uint8"),
    ("stride 0", (1, 1, 5, 5), (1, 1, 3, 3), np.float64, 0, 0, r"stride must be >= 1; got 0"),
    ("negative pad", (1, 1, 5, 5), (1, 1, 3, 3), np.float64, 1, -1, r"pad must be >= 0; got -1"),
    ("float stride", (1, 1, 5, 5), (1, 1, 3, 3), np.float64, 1.5, 0, r"stride must be an integer; got 1.5"),
]


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("case", BAD_CONV_ARGUMENTS, ids=lambda case: case[0])
def test_conv2d_refuses_bad_arguments_by_name(backend, case):
    _, x_shape, w_shape, dtype, stride, pad, message = case
    x = np.zeros(x_shape, dtype)
    w = np.zeros(w_shape, np.float64 if dtype == np.uint8 else dtype)
    with pytest.raises(ValueError, match=message):
        get_backend(backend).conv2d_forward(x, w, np.zeros(w_shape[0], w.dtype), stride, pad)


@pytest.mark.parametrize("backend", BACKENDS)
def test_backward_kernels_refuse_a_dout_of_the_wrong_shape(backend):
    kernels = get_backend(backend)
    x, w, b, stride, pad = conv_arrays(CONV_CASES[0])
    with pytest.raises(ValueError, match=r"dout must have the forward output's shape \(1, 1, 3, 3\); got \(1, 1, 4, 4\)"):
        kernels.conv2d_backward(np.zeros((1, 1, 4, 4)), x, w, stride, pad)
    with pytest.raises(ValueError, match=r"conv2d_backward_weights: dout must have the forward output's shape"):
        kernels.conv2d_backward_weights(np.zeros((1, 1, 4, 4)), x, w, stride, pad)
    with pytest.raises(ValueError, match=r"dout must have the forward output's shape \(1, 1, 2, 2\); got \(1, 1, 3, 3\)"):
        kernels.maxpool2d_backward(np.zeros((1, 1, 3, 3)), x, 2)


@pytest.mark.parametrize("backend", BACKENDS)
def test_maxpool2d_refuses_a_window_larger_than_the_input(backend):
    with pytest.raises(ValueError, match=r"size 3 \(a 3x3 window\) must fit in x.s 2x2 images"):
        get_backend(backend).maxpool2d_forward(np.zeros((1, 1, 2, 2)), 3)


def test_backends_say_whether_they_offer_the_fused_layer():
    for name in BACKENDS:
        backend = get_backend(name)
        assert backend.offers("conv2d_relu_maxpool2d_forward") == (name == "tuned"), name
        assert (backend.conv2d_relu_maxpool2d_forward is None) == (name != "tuned"), name
        assert backend.offers("conv2d_forward")
    with pytest.raises(AttributeError, match="has no kernel 'conv3d_forward'"):
        get_backend("loop").conv3d_forward


@needs_numba
def test_tuned_names_numba_as_the_server_of_the_kernels_it_does_not_offer():
    tuned, numba = get_backend("tuned"), get_backend("numba")
    assert tuned.served_by["maxpool2d_forward"] == tuned.served_by["maxpool2d_backward"] == "numba"
    assert tuned.maxpool2d_backward is numba.maxpool2d_backward
    assert tuned.served_by["conv2d_forward"] == "tuned"


def test_a_kernel_is_one_contract_row_plus_its_implementations(monkeypatch):
    # A new kernel and a backend that offers only it, the rest served by loop: nothing else changes.
    import types

    from fcnn import kernels
    from fcnn.kernels import contract

    def check_scale(x, factor=2):
        contract.check_array("scale", "x", x, 4)
        return np.ascontiguousarray(x), float(factor)

    module = types.ModuleType("scaling_backend")
    module.scale = lambda x, factor: x * factor
    module.KERNELS_SERVED_BY = "loop"
    monkeypatch.setitem(contract.KERNELS, "scale", contract.Kernel(check_scale, "out = x * factor", optional=True))
    monkeypatch.setitem(kernels.BACKENDS, "scaling", "scaling_backend")
    monkeypatch.setitem(sys.modules, "scaling_backend", module)
    get_backend.cache_clear()
    try:
        backend = get_backend("scaling")
        np.testing.assert_array_equal(backend.scale(np.ones((1, 1, 2, 2))), np.full((1, 1, 2, 2), 2.0))
        assert backend.scale.__doc__ == "out = x * factor" and backend.served_by["scale"] == "scaling"
        assert backend.conv2d_forward is get_backend("loop").conv2d_forward
        assert get_backend("loop").scale is None
        with pytest.raises(ValueError, match="scale: x must have 4 dimensions"):
            backend.scale(np.ones(3))
        # Unchecked: the implementation itself, for a caller that checked the arguments already.
        assert backend.unchecked("scale") is module.scale
        assert backend.unchecked("conv2d_forward") is get_backend("loop").unchecked("conv2d_forward")
        assert get_backend("loop").unchecked("scale") is None
        with pytest.raises(AttributeError, match="has no kernel 'conv3d_forward'"):
            backend.unchecked("conv3d_forward")
    finally:
        get_backend.cache_clear()
