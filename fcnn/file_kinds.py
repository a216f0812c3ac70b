"""What a path names, in the words a message needs: "a directory", "a FIFO (named pipe)", ...

A reader that opens a FIFO waits for a writer forever, and "no such file" for a folder sends the
user looking in the wrong place, so every reader and output check asks here first.
"""

import os
import stat

KINDS = (
    (stat.S_ISDIR, "a directory"),
    (stat.S_ISFIFO, "a FIFO (named pipe)"),
    (stat.S_ISSOCK, "a socket"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
)


def kind_of(path):
    """None for a regular file (or a link to one); else what `path` is: "no such file", "a broken
    symbolic link", "a directory", "a FIFO (named pipe)", "a socket", a character or block device."""
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        return "a broken symbolic link" if os.path.islink(path) else "no such file"
    except OSError as error:
        return f"not readable ({error.strerror or error})"
    if stat.S_ISREG(mode):
        return None
    return next((kind for test, kind in KINDS if test(mode)), "not a regular file")


def not_a_file(path):
    """The message part for a path that is not a regular file: "is a directory, not a regular
    file", "no such file"; None for a regular file."""
    kind = kind_of(path)
    if kind is None or kind == "no such file" or kind.startswith("not "):
        return kind
    return f"is {kind}, not a regular file"
