"""fcnn.kernels.numba_cache.variant_name: a compiled variant's name says everything its code depends on."""

import numpy as np
import pytest

from fcnn.kernels.numba_cache import compile_variant, variant_name


def closure_over(value):
    def function(x):
        return x + value

    return function


def test_numbers_and_options_are_in_the_name():
    name = variant_name("kernel", closure_over(3), {"parallel": True, "fastmath": {"contract"}})
    assert name == "kernel_fastmath-contract_parallel_value3"
    assert variant_name("kernel", closure_over(4), {}) != variant_name("kernel", closure_over(3), {})


def test_a_captured_compiled_function_is_named_by_a_checksum_of_its_own_name():
    one = compile_variant(closure_over(1), "part")
    two = compile_variant(closure_over(2), "part")

    def calling(function):
        def caller(x):
            return function(x)

        return caller

    first, second = variant_name("caller", calling(one), {}), variant_name("caller", calling(two), {})
    assert first != second
    assert first.startswith("caller_function") and len(first) == len("caller_function") + 8
    assert compile_variant(calling(two), "caller")(np.float64(1.0)) == 3.0


def test_other_captured_values_are_refused():
    with pytest.raises(TypeError, match="value is ndarray"):
        variant_name("kernel", closure_over(np.zeros(2)), {})
