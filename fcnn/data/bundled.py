"""The official MNIST files: their names, the SHA-256 of each, and the copy fcnn ships in fcnn/mnist."""

import hashlib
from pathlib import Path

from fcnn.data._files import DataFormatError

BUNDLED_DIR = Path(__file__).parent.parent / "mnist"

# SHA-256 of the *uncompressed* official files (fcnn/mnist/README.md); the one place they live.
OFFICIAL_SHA256 = {
    "train-images-idx3-ubyte": "ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db",
    "train-labels-idx1-ubyte": "65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5",
    "t10k-images-idx3-ubyte": "0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7",
    "t10k-labels-idx1-ubyte": "ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2",
}


def check_sha256(raw, path, stem):
    """The uncompressed bytes `raw` read from `path` must hash to the official SHA-256 of `stem`."""
    found = hashlib.sha256(raw).hexdigest()
    if found != OFFICIAL_SHA256[stem]:
        raise DataFormatError(
            f"{path}: checksum mismatch for {stem}: SHA-256 of the uncompressed bytes is {found}, "
            f"the official file's is {OFFICIAL_SHA256[stem]}"
        )
