"""A rung of a ladder, and which rungs are side branches."""

from typing import Callable, NamedTuple, Optional


class Rung(NamedTuple):
    """One step of a ladder: its name, its kernel (the contract's signature), and the rung it transforms.

    builds_on is None for the first rung. A side branch is a rung no later rung builds on (a
    dead end kept for what it teaches); the last rung is the top, not a branch.
    """

    name: str
    function: Callable
    builds_on: Optional[str]


def side_branches(rungs):
    """The names of the rungs of `rungs` that no later rung builds on, the last rung excepted."""
    built_on = {rung.builds_on for rung in rungs}
    return [rung.name for rung in rungs[:-1] if rung.name not in built_on]
