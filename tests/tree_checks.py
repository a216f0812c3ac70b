"""A check shared by the tests of training and the training script: two trees hold the same arrays."""

import numpy as np

from fcnn.tree import tree_paths


def assert_trees_equal(actual, expected, note=""):
    """actual and expected (fcnn.tree trees) have the same paths and np.array_equal arrays at each
    (the same values: a NaN equals nothing); a failure names the path, e.g. conv1.w, after `note`."""
    actual_leaves, expected_leaves = dict(tree_paths(actual)), dict(tree_paths(expected))
    assert actual_leaves.keys() == expected_leaves.keys(), note
    for path, array in expected_leaves.items():
        assert np.array_equal(actual_leaves[path], array), f"{note}{'.'.join(path)}"
