"""How long the light CLI commands take, start to exit: median of N fresh processes per command.

Each run is ``python -c "from ocrkit.cli.app import main; main()" ARGS`` (what the ``ocrkit``
console script does) with the given source tree first on PYTHONPATH, so an older checkout can be
timed with the same interpreter and packages:

    git worktree add /tmp/before <commit>
    .venv/bin/python tools/cli_start_times.py --tree before=/tmp/before --tree after=.

The eval case scores the ICDAR-2015 sample's ground truth against predictions made from it (the
care polygons, written as res_<stem>.txt), so it measures reading and scoring files, not a model.
One untimed run per command and tree comes first (bytecode, page cache); the timed runs of all
trees and commands are interleaved, so drift in machine load falls on each alike.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
LAUNCH = "import sys; sys.argv[0] = 'ocrkit'; from ocrkit.cli.app import main; sys.exit(main())"
FLAGS = ("avx2", "fma", "avx512f", "avx512_bf16", "amx_bf16")


def default_gt_dir() -> Path:
    root = Path(os.environ.get("OCRKIT_SAMPLE_DIR", REPO.parent / "shared" / "data" / "icdar2015_sample"))
    return root / "gts"


def write_predictions_from_gt(gt_dir: Path, pred_dir: Path) -> int:
    """res_<stem>.txt with each care gt polygon (8 coordinates, no transcription); returns the count."""
    files = sorted(gt_dir.glob("gt_*.txt"))
    for gt in files:
        lines = []
        for line in gt.read_text(encoding="utf-8-sig").splitlines():
            fields = line.strip().split(",")
            if len(fields) < 9 or ",".join(fields[8:]).strip() == "###":
                continue
            lines.append(",".join(f.strip() for f in fields[:8]) + "\n")
        (pred_dir / f"res_{gt.stem[len('gt_') :]}.txt").write_text("".join(lines), encoding="utf-8")
    return len(files)


def run_once(tree: Path, args: list[str]) -> float:
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(tree), os.environ.get("PYTHONPATH")])))
    start = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-c", LAUNCH, *args],
        env=env,
        cwd=tree,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    seconds = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(f"{tree}: ocrkit {' '.join(args)} exited {done.returncode}:\n{done.stderr[-2000:]}")
    return seconds


def machine() -> str:
    """CPU model, the flags that matter for speed, Python and the date: what sits beside the figures."""
    fields: dict[str, str] = {}
    try:
        for line in Path("/proc/cpuinfo").read_text().split("\n\n")[0].splitlines():
            key, _, value = line.partition(":")
            fields.setdefault(key.strip(), value.strip())
    except OSError:
        pass
    model = fields.get("model name") or platform.processor() or platform.machine()
    flags = set(fields.get("flags", "").split())
    present = ", ".join(f for f in FLAGS if f in flags) or "none"
    absent = ", ".join(f for f in FLAGS if f not in flags) or "none"
    return (
        f"{model}; {os.cpu_count()} logical CPUs; flags present: {present}; absent: {absent}; "
        f"Python {platform.python_version()}; {datetime.now(UTC):%Y-%m-%d %H:%M} UTC"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--tree",
        action="append",
        metavar="LABEL=DIR",
        help="A source tree to time (repeatable); default: this repository as 'now'.",
    )
    parser.add_argument("--repeats", type=int, default=7, help="Timed runs per command and tree (median reported).")
    parser.add_argument("--gt-dir", type=Path, default=default_gt_dir(), help="Ground truth for the eval case.")
    opts = parser.parse_args()
    trees = [
        (label, Path(path).resolve())
        for label, _, path in (item.partition("=") for item in (opts.tree or [f"now={REPO}"]))
    ]
    if not opts.gt_dir.is_dir():
        raise SystemExit(f"{opts.gt_dir}: ground truth not found (give --gt-dir or set OCRKIT_SAMPLE_DIR)")

    with tempfile.TemporaryDirectory(prefix="ocrkit-start-") as tmp:
        pred_dir = Path(tmp) / "pred"
        pred_dir.mkdir()
        images = write_predictions_from_gt(opts.gt_dir, pred_dir)
        commands = {
            "ocrkit --version": ["--version"],
            "ocrkit --help": ["--help"],
            "ocrkit config show": ["config", "show"],
            f"ocrkit eval --gt-dir --pred-dir ({images} images)": [
                "eval",
                "--gt-dir",
                str(opts.gt_dir),
                "--pred-dir",
                str(pred_dir),
            ],
        }
        times: dict[tuple[str, str], list[float]] = {(c, label): [] for c in commands for label, _ in trees}
        for args in commands.values():
            for _, tree in trees:
                run_once(tree, args)  # untimed warm-up
        for _ in range(opts.repeats):
            for name, args in commands.items():
                for label, tree in trees:
                    times[name, label].append(run_once(tree, args))

    print(machine())
    print(f"median of {opts.repeats} runs, seconds (min-max in brackets)\n")
    header = "| command | " + " | ".join(label for label, _ in trees) + " |"
    print(header)
    print("|" + "---|" * (len(trees) + 1))
    for name in commands:
        cells = [
            f"{statistics.median(t):.2f} ({min(t):.2f}-{max(t):.2f})"
            for t in (times[name, label] for label, _ in trees)
        ]
        print(f"| `{name}` | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
