"""Command line of the exercises: list, new KERNEL, check FILE [--format F] [--out PATH].

Exit status: 0 when every kernel in the file passes, 1 when one fails or the file cannot be
checked, 2 for a usage error (unknown kernel, missing file, a bad points table).
"""

import argparse
import json
import sys
from pathlib import Path

from fcnn.exercises import KERNELS, LearnerFileError, Limits, check_file, list_exercises, stub
from fcnn.exercises.formats import FORMATS, check_points, render


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m fcnn.exercises",
                                     description="Write a CNN kernel yourself and check it.")
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("list", help="the kernels that can be practised, with their goals")
    new = commands.add_parser("new", help="print a stub to start from")
    new.add_argument("kernel", help="one of: " + ", ".join(KERNELS))
    check = commands.add_parser("check", help="check every exercisable kernel a file defines")
    check.add_argument("file", help="your Python file")
    check.add_argument("--format", choices=list(FORMATS), default="text",
                       help="text (default), json (fcnn's record), gradescope or prairielearn (their results.json)")
    check.add_argument("--out", help="write the verdict to this file instead of printing it")
    check.add_argument("--points", help="a JSON file of points per case: {kernel: number or {case name: number}}; "
                                        "1 per case by default")
    check.add_argument("--time-limit", type=float, default=Limits.time_s, metavar="SECONDS",
                       help=f"per case, and for loading the file (default {Limits.time_s:g})")
    check.add_argument("--memory-limit", type=int, default=Limits.memory_mb, metavar="MB",
                       help=f"address space of the learner's process (default {Limits.memory_mb})")
    check.add_argument("--output-limit", type=int, default=Limits.output_kb, metavar="KB",
                       help=f"what the learner's code may print or write (default {Limits.output_kb})")
    check.add_argument("--fcnn-kernels-score", action="store_true",
                       help="let a kernel that imports or calls fcnn's own implementation score")
    arguments = parser.parse_args(argv)

    if arguments.command == "list":
        return print_list()
    if arguments.command == "new":
        return print_stub(arguments.kernel)
    return print_check(arguments)


def print_list():
    width = max(len(name) for name in KERNELS)
    print("Kernels to practise (python -m fcnn.exercises new NAME > my_NAME.py):")
    for name, goal in list_exercises():
        print(f"  {name:<{width}}  {goal}")
    return 0


def print_stub(kernel):
    if kernel not in KERNELS:
        print(f"unknown kernel {kernel!r}; choose one of: {', '.join(KERNELS)}", file=sys.stderr)
        return 2
    print(stub(kernel), end="")
    return 0


def read_points(path):
    """The points table in the JSON file at `path` (None: 1 per case); ValueError saying what is wrong."""
    if path is None:
        return None
    try:
        points = json.loads(Path(path).read_text())
    except (OSError, ValueError) as error:
        raise ValueError(f"points: cannot read {path}: {error}") from None
    if not isinstance(points, dict):
        raise ValueError(f"points: {path} must hold a JSON object {{kernel: points}}")
    check_points(points)
    return points


def print_check(arguments):
    path = arguments.file
    if not Path(path).is_file():
        print(f"no such file: {path}", file=sys.stderr)
        return 2
    if not (arguments.time_limit > 0 and arguments.memory_limit > 0 and arguments.output_limit > 0):
        print("--time-limit, --memory-limit and --output-limit must be > 0", file=sys.stderr)
        return 2
    try:
        points = read_points(arguments.points)
    except ValueError as error:
        print(error, file=sys.stderr)
        return 2
    limits = Limits(arguments.time_limit, arguments.memory_limit, arguments.output_limit)
    reports, error = [], None
    try:
        reports = check_file(path, limits, borrowed_scores=arguments.fcnn_kernels_score)
    except LearnerFileError as failed:
        error = str(failed)
    text = render(arguments.format, path, reports, error, points)
    if arguments.out:
        Path(arguments.out).parent.mkdir(parents=True, exist_ok=True)
        Path(arguments.out).write_text(text)
    else:
        print(text, end="")
    return 0 if error is None and all(report.passed for report in reports) else 1


if __name__ == "__main__":
    sys.exit(main())
