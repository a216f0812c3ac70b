"""Parameter trees: nested dicts whose leaves are arrays, walked in one place.

Params, gradients, optimiser moments and model state are all trees such as
{"conv1": {"w": ..., "b": ...}, "batchnorm1": {"gamma": ..., "beta": ...}}: a layer's arrays
may have any names. Optimisers, checkpoints and checks walk them with these helpers, so a new
kind of parameter needs no change anywhere else.
"""


def tree_paths(tree, prefix=()):
    """Every (path, leaf) of `tree` in insertion order; path is the tuple of keys, ("conv1", "w")."""
    if isinstance(tree, dict):
        for key, subtree in tree.items():
            yield from tree_paths(subtree, (*prefix, key))
    else:
        yield prefix, tree


def tree_structure(tree):
    """The tree with each leaf replaced by None: two trees fit together when these are equal."""
    if isinstance(tree, dict):
        return {key: tree_structure(subtree) for key, subtree in tree.items()}
    return None


def same_structure(tree, other):
    """tree_structure(tree) == tree_structure(other), without building either (key order does not matter)."""
    if not isinstance(tree, dict):
        return not isinstance(other, dict)
    if not isinstance(other, dict) or tree.keys() != other.keys():
        return False
    for key, subtree in tree.items():  # a loop, not all(generator): checked on every optimiser step
        if not same_structure(subtree, other[key]):
            return False
    return True


def tree_leaf(tree, path):
    """The leaf of `tree` at `path`, a tuple of keys as tree_paths gives them."""
    for key in path:
        tree = tree[key]
    return tree


def tree_map(function, tree, *others):
    """A new tree of function(leaf, *other_leaves) at every leaf of `tree`; `others` share its structure.

    Raises ValueError if one of `others` has another structure (keys missing or extra).
    """
    for position, other in enumerate(others):
        if not same_structure(other, tree):
            raise ValueError(
                f"tree {position + 1} must have the structure of the first, "
                f"{describe_structure(tree)}; got {describe_structure(other)}"
            )
    return _map(function, tree, others)


def _map(function, tree, others):
    if isinstance(tree, dict):
        return {key: _map(function, subtree, [other[key] for other in others]) for key, subtree in tree.items()}
    return function(tree, *others)


def describe_structure(tree):
    """A short text of a tree's keys, for messages: {'conv1': ['b', 'w'], 'dense1': ['b', 'w']}."""
    if not isinstance(tree, dict):
        return type(tree).__name__
    if all(not isinstance(subtree, dict) for subtree in tree.values()):
        return str(sorted(tree))
    return "{" + ", ".join(f"{key!r}: {describe_structure(subtree)}" for key, subtree in tree.items()) + "}"


def tree_unzip(tree, count):
    """A tree whose leaves are `count`-tuples -> `count` trees of the same structure, one per slot.

    tree_unzip(tree_map(lambda p: (p, 2 * p), params), 2) == (params, doubled params).
    """
    return tuple(_map(lambda leaf, slot=slot: leaf[slot], tree, []) for slot in range(count))
