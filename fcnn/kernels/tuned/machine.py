"""The machine numba compiles for, and the register tile the tuned conv forward takes on it.

numba compiles for the host CPU, or for NUMBA_CPU_NAME / NUMBA_CPU_FEATURES when they are set;
this module reads the same two settings the same way. On AVX-512 CPUs LLVM writes 256-bit
vectors for some (the Intel Xeon measured, rocketlake) and 512-bit for others (AMD Zen 5,
znver5), but either way it has 32 vector registers where AVX2 has 16, and that changes which
register tile wins (docs/ladder.md). The tile is a pure function of the instruction set and
the layer shape, chosen in Python before compiling and named in the compiled kernel's name, so
a kernel loaded from numba's disk cache (whose index is keyed on the CPU name and features too)
is the one a fresh compile makes. Every tile gives loop.py's numbers; FCNN_CONV_FORWARD_TILE forces one.
"""

import functools
import os

from numba.core import codegen, config

# The register tiles of the tuned conv forward (fcnn/kernels/tuned/conv_forward.py).
TWO_FILTERS, FOUR_FILTERS, FILTERS_IN_LANES = "two filters", "four filters", "filters in lanes"
TILES = (TWO_FILTERS, FOUR_FILTERS, FILTERS_IN_LANES)
TILE_VARIABLE = "FCNN_CONV_FORWARD_TILE"
# Output columns each "filters in lanes" pass keeps as sums: with 16 float32 filters that is
# 10 x 2 vector registers, and the 14 inputs of a 5-wide kernel row broadcast beside them: the
# 32 registers of AVX-512, not the 16 of AVX2.
LANES_COLUMNS = 10
# "filters in lanes" stores each output on its own (its sums run across filters, the output
# across columns): it pays where each output has many taps, C*KH*KW, to amortise that store.
LANES_MIN_TAPS = 32
# "four filters" unrolls 4 x KH x KW multiply-adds in its vectorised loop; beyond 3x3 LLVM
# stops vectorising it (docs/ladder.md, rung 6).
FOUR_FILTERS_MAX_TAPS = 9


def target_cpu():
    """(name, features) numba compiles for: NUMBA_CPU_NAME or the host's name, NUMBA_CPU_FEATURES
    or the host's features (as numba.core.codegen reads them, NUMBA_ENABLE_AVX honoured)."""
    name = config.CPU_NAME or codegen.ll.get_host_cpu_name()
    features = config.CPU_FEATURES if config.CPU_FEATURES is not None else codegen.get_host_cpu_features()
    return name, features


def instruction_set(features):
    """"AVX-512", "AVX2" or "SSE" of an LLVM feature string ("+avx2,+fma,-avx512f,...")."""
    enabled = {feature[1:] for feature in features.split(",") if feature.startswith("+")}
    if "avx512f" in enabled:
        return "AVX-512"
    if {"avx2", "fma"} <= enabled:
        return "AVX2"
    return "SSE"


@functools.cache
def target_instruction_set():
    """instruction_set of the CPU numba compiles for (fixed for the process, as numba's target is)."""
    return instruction_set(target_cpu()[1])


def conv_forward_tile(C, F, KH, KW, instructions=None):
    """The register tile of the tuned stride-1 conv forward for w (F, C, KH, KW), one of TILES.

    FCNN_CONV_FORWARD_TILE, when set, names the tile; else, on `instructions` (the target's by default):
    AVX-512 and F a multiple of 8 with C*KH*KW >= LANES_MIN_TAPS: filters in lanes; kernels of
    FOUR_FILTERS_MAX_TAPS taps or fewer: four filters; else two filters.
    """
    forced = os.environ.get(TILE_VARIABLE)
    if forced:
        if forced not in TILES:
            raise ValueError(f"{TILE_VARIABLE} must be one of {', '.join(TILES)}; got {forced!r}")
        return forced
    instructions = instructions or target_instruction_set()
    if instructions == "AVX-512" and F % 8 == 0 and C * KH * KW >= LANES_MIN_TAPS:
        return FILTERS_IN_LANES
    if KH * KW <= FOUR_FILTERS_MAX_TAPS:
        return FOUR_FILTERS
    return TWO_FILTERS


def describe():
    """One line on the machine and the tuned conv forward's choice, for benchmark reports and start-up lines.

    "AVX-512 (rocketlake): conv forward tile filters in lanes x 10 columns (F % 8 == 0, C*KH*KW >= 32),
    four filters (KH*KW <= 9), else two filters"
    """
    name, _ = target_cpu()
    forced = os.environ.get(TILE_VARIABLE)
    if forced:
        return f"{target_instruction_set()} ({name}): conv forward tile {forced} ({TILE_VARIABLE})"
    rules = [f"{FOUR_FILTERS} (KH*KW <= {FOUR_FILTERS_MAX_TAPS})", f"else {TWO_FILTERS}"]
    if target_instruction_set() == "AVX-512":
        rules.insert(0, f"{FILTERS_IN_LANES} x {LANES_COLUMNS} columns (F % 8 == 0, C*KH*KW >= {LANES_MIN_TAPS})")
    return f"{target_instruction_set()} ({name}): conv forward tile " + ", ".join(rules)
