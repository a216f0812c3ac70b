"""Command line of the exercises: list, new KERNEL, check FILE.

Exit status: 0 when every kernel in the file passes, 1 when one fails or the file cannot be
checked, 2 for a usage error (unknown kernel, missing file).
"""

import argparse
import sys
from pathlib import Path

from fcnn.exercises import KERNELS, LearnerFileError, check_file, list_exercises, stub


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m fcnn.exercises",
                                     description="Write a CNN kernel yourself and check it.")
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("list", help="the kernels that can be practised, with their goals")
    new = commands.add_parser("new", help="print a stub to start from")
    new.add_argument("kernel", help="one of: " + ", ".join(KERNELS))
    check = commands.add_parser("check", help="check every exercisable kernel a file defines")
    check.add_argument("file", help="your Python file")
    arguments = parser.parse_args(argv)

    if arguments.command == "list":
        return print_list()
    if arguments.command == "new":
        return print_stub(arguments.kernel)
    return print_check(arguments.file)


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


def print_check(path):
    if not Path(path).is_file():
        print(f"no such file: {path}", file=sys.stderr)
        return 2
    try:
        reports = check_file(path)
    except LearnerFileError as error:
        print(error)
        return 1
    for report in reports:
        print(report.summary())
    for report in reports:
        if not report.passed:
            print()
            print(report.details())
    return 0 if all(report.passed for report in reports) else 1


if __name__ == "__main__":
    sys.exit(main())
