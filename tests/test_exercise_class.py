"""The checker on a class's worth of files: 200 hand-ins, some of which hang, each gets its verdict in time."""

import time

from fcnn.exercises import Limits, check_files

RIGHT = "import numpy as np\n\ndef relu_forward(x):\n    return np.maximum(x, 0)\n"
WRONG = "import numpy as np\n\ndef relu_forward(x):\n    return np.maximum(x, 0) + 1e-3\n"
HANGS = "def relu_forward(x):\n    while True:\n        pass\n"
EXITS = "import os\n\ndef relu_forward(x):\n    os._exit(3)\n"
BROKEN = "def relu_forward(x)\n    return x\n"
KINDS = {"right": RIGHT, "wrong": WRONG, "hangs": HANGS, "exits": EXITS, "broken": BROKEN}
# 200 files: 150 right, 20 wrong, 10 that hang, 10 that exit, 10 that do not compile.
CLASS = ["right"] * 150 + ["wrong"] * 20 + ["hangs"] * 10 + ["exits"] * 10 + ["broken"] * 10
TIME_LIMIT_S = 1.0


def test_a_class_of_200_files_some_hanging_gets_a_verdict_for_every_file_within_its_limits(tmp_path):
    paths = []
    for number, kind in enumerate(CLASS):
        path = tmp_path / f"learner_{number:03d}_{kind}.py"
        path.write_text(KINDS[kind])
        paths.append(path)

    start = time.monotonic()
    results = check_files(paths, Limits(time_s=TIME_LIMIT_S), workers=2)
    seconds = time.monotonic() - start

    assert list(results) == paths
    verdicts = {}
    for path, (reports, error) in results.items():
        kind = path.stem.rsplit("_", 1)[1]
        if kind == "broken":
            assert reports == [] and "line 1:" in error, (path, error)
            verdict = "broken"
        else:
            [report] = reports
            assert error is None
            verdict = "right" if report.passed else kind
            if kind == "hangs":
                assert f"did not finish within {TIME_LIMIT_S:g} s" in report.failure.message
            if kind == "exits":
                assert "exit status 3" in report.failure.message
        verdicts[path] = verdict
    assert [verdicts[path] for path in paths] == CLASS
    # The hanging files cost one time limit each, shared by two workers; the rest a fraction of a
    # second each. 60 s leaves room for a loaded machine.
    assert seconds < 60, f"{len(paths)} files took {seconds:.1f} s"
    print(f"\n{len(paths)} files checked in {seconds:.1f} s on 2 workers")
