"""Draw the pictures of a saved training run: curves, filters, confusion matrix, mistakes.

    python scripts/plot_run.py runs/seed.npz                # PNGs into runs/seed.plots/
    python scripts/plot_run.py runs/seed.npz --out docs/images --backend numba --dpi 150
"""

import argparse
import sys
from pathlib import Path


def parse_arguments(argv=None):
    from fcnn.plots import DPI  # fcnn.plots imports matplotlib only when it draws

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("checkpoint", type=Path, help="a checkpoint .npz written by the training script")
    parser.add_argument("--metrics", type=Path,
                        help="metrics file, one JSON object per epoch (default: <checkpoint>.metrics.jsonl "
                             "beside the checkpoint, else the metrics stored in the checkpoint)")
    parser.add_argument("--out", type=Path, help="directory for the PNGs (default: <checkpoint>.plots/)")
    parser.add_argument("--data", type=Path, help="MNIST directory or .npz (default: the bundled copy)")
    parser.add_argument("--backend", default="numpy", help="kernel backend for the predictions (default: numpy)")
    parser.add_argument("--dpi", type=int, default=DPI, help=f"pixels per inch of the PNGs (default: {DPI})")
    return parser.parse_args(argv)


def main(argv=None):
    arguments = parse_arguments(argv)
    from fcnn.plots import MatplotlibMissingError, require_matplotlib

    try:
        require_matplotlib()
    except MatplotlibMissingError as error:
        print(f"plot_run.py: {error}", file=sys.stderr)
        return 2

    from fcnn.checkpoint import load_checkpoint, metrics_path
    from fcnn.data import load_mnist
    from fcnn.plots import read_metrics, write_run_plots

    out = arguments.out or arguments.checkpoint.with_suffix(".plots")
    try:
        checkpoint = load_checkpoint(arguments.checkpoint)
        beside = Path(metrics_path(arguments.checkpoint))
        if arguments.metrics is not None:
            metrics = read_metrics(arguments.metrics)
        elif beside.exists():
            metrics = read_metrics(beside)
        else:
            metrics = checkpoint["metrics"]  # a checkpoint also carries the metrics of its epochs
        _, _, x_test, y_test = load_mnist(arguments.data)
        written = write_run_plots(out, checkpoint["params"], checkpoint["arch"], metrics, x_test, y_test,
                                  backend=arguments.backend, dpi=arguments.dpi)
    except (OSError, ValueError) as error:
        print(f"plot_run.py: {error}", file=sys.stderr)
        return 1
    for path in written:
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
