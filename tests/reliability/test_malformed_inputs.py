"""The malformed-input corpus (tests/reliability/corpus.py) through every reader.

Every case goes through the library readers (``load_dataset``, the image list ``predict`` reads,
``evaluate_dirs``) in the default suite. Through the commands (``train`` one step, ``eval
--checkpoint``, ``eval --gt-dir/--pred-dir``, ``predict``, ``maps precompute``, ``data check``),
each plainly and with ``--skip-bad``: a deterministic sample of ``CLI_SAMPLE`` cases in the
default suite (one of each way a case behaves at the commands, then one of as many kinds as fit;
``sample_cases``), the rest of the corpus under the ``slow`` marker, which runs only when asked
for (``pytest -m slow``, ``make test-slow``; about 15 minutes on a 2-core CPU).

What each run must do (``Expect`` in corpus.py): an ``error`` is a non-zero exit and exactly one
output line, ``error: <file>:<line>: ...`` (or ``<file>: <key.path>: ...``) naming the expected
place, no traceback and no exception but SystemExit; with ``--skip-bad`` (where the sample can be
skipped) it is exit 0, one ``skipping bad sample`` warning per bad sample naming it, the final
count, and the good samples used. A ``warn`` is exit 0 with a warning naming the place; ``ok`` is
exit 0 without a warning or an error. The case count and the outcome table (kind x reader) are
printed at the end of the run.
"""

from __future__ import annotations

import json
import re
import warnings
from collections import Counter, defaultdict
from dataclasses import dataclass
from pathlib import Path

import pytest
from corpus import Case, Expect, build_corpus, icdar_files, kinds, sample_cases, write_case

from conftest import set_args
from ocrkit.core.errors import InputError

SEED = 0
CLI_SAMPLE = 40
CORPUS = build_corpus(SEED)
SAMPLE = sample_cases(CORPUS, CLI_SAMPLE, SEED)

LIBRARY = ("load_dataset", "load_image_paths", "evaluate_dirs")
COMMANDS = ("data check", "train", "eval", "maps precompute", "predict", "eval files")
OUTCOMES = {"error", "skipped", "warn", "ok"}  # what _check reports for a run it accepted
READS = {  # which of a case's expectations each reader follows
    "load_dataset": "data",
    "load_image_paths": "images",
    "evaluate_dirs": "scores",
    "data check": "data",
    "train": "data",
    "eval": "data",
    "maps precompute": "data",
    "predict": "images",
    "eval files": "scores",
}
TINY = set_args(
    "model.base_width=4",
    "model.inner_channels=16",
    "model.head_channels=4",
    "data.train_size=[64,64]",
    "data.eval_size=[64,64]",
    "data.num_workers=0",
    "log.tensorboard=false",
    "train.max_steps=1",
    "train.batch_size=2",
    "train.overlays=0",
)

# (kind, reader) -> Counter of outcomes: error (one line), skipped (--skip-bad ran on), warn, ok
TABLE: dict[tuple[str, str], Counter] = defaultdict(Counter)
RAN: dict[str, set[str]] = defaultdict(set)  # "library" | "commands" -> names of the cases run


@dataclass
class Run:
    """What one reader did: exit code, output lines, the exception object (CLI), samples used."""

    exit_code: int
    output: str
    exception: BaseException | None
    used: int | None

    @property
    def lines(self) -> list[str]:
        return [line for line in self.output.splitlines() if line.strip()]


# ---------------------------------------------------------------- the outcome table


class _TablePrinter:
    """Prints the case count and the outcome table in pytest's terminal summary."""

    def pytest_terminal_summary(self, terminalreporter) -> None:
        if not TABLE:
            return
        write = terminalreporter.write_line
        write("")
        write(f"malformed-input corpus: {len(CORPUS)} cases of {len(set(c.kind for c in CORPUS))} kinds (seed {SEED})")
        write(
            f"through the library readers: {len(RAN['library'])} cases; through the commands: "
            f"{len(RAN['commands'])} (the default suite samples {CLI_SAMPLE}; pytest -m slow runs the rest)"
        )
        write("cells: E = one-line error, S = run on with --skip-bad, W = accepted with a warning, ok; - = not read")
        readers = [r for r in (*LIBRARY, *COMMANDS) if any(reader == r for _, reader in TABLE)]
        width = max(len(k) for k in kinds(CORPUS))
        write(f"{'kind':<{width}}  " + "  ".join(f"{r:>16}" for r in readers))
        totals: dict[str, Counter] = defaultdict(Counter)
        for kind in kinds(CORPUS):
            cells = []
            for reader in readers:
                counts = TABLE.get((kind, reader), Counter())
                totals[reader].update(counts)
                cells.append(f"{_cell(counts):>16}")
            write(f"{kind:<{width}}  " + "  ".join(cells))
        write(f"{'total':<{width}}  " + "  ".join(f"{_cell(totals[r]):>16}" for r in readers))


def _cell(counts: Counter) -> str:
    parts = [f"{counts[key]}{label}" for key, label in (("error", "E"), ("skipped", "S"), ("warn", "W"), ("ok", "ok"))]
    return " ".join(p for p in parts if not p.startswith("0")) or "-"


@pytest.fixture(scope="module", autouse=True)
def outcome_table(request):
    manager = request.config.pluginmanager
    if not manager.has_plugin("ocrkit-malformed-inputs-table"):
        manager.register(_TablePrinter(), "ocrkit-malformed-inputs-table")
    yield


# ---------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def corpus_root(tmp_path_factory) -> Path:
    """Every case written once (read only from here on)."""
    root = tmp_path_factory.mktemp("corpus")
    for case in CORPUS:
        write_case(case, root / case.name)
    return root


@pytest.fixture(scope="module")
def work(tmp_path_factory) -> Path:
    """Where the commands write: runs, outputs and the store (never the user's cache). Torch
    runs on one thread meanwhile: the runs are tiny, and on a shared 2-core machine its thread
    pool spinning against other processes made a one-step training run 10x slower."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield tmp_path_factory.mktemp("malformed-work")
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def checkpoint(work) -> Path:
    """A tiny checkpoint (one training step on a good set), made once."""
    good = write_case(Case("good", "good", "icdar", icdar_files(), None, None, None), work / "good-set")
    result = _invoke(["train", "--data", good, "--quiet", "--name", "ckpt", *TINY, *_places(work)])
    assert result.exit_code == 0, result.output
    return work / "runs" / "train" / "ckpt" / "last.pt"


def _places(work: Path) -> list[str]:
    return set_args(f"log.dir={work / 'runs'}", f"cache.dir={work / 'cache'}")


# ---------------------------------------------------------------- running a reader


def _invoke(args: list) -> object:
    """``ocrkit ARGS`` in-process, its warnings shown as a fresh process would show them (the
    'default' action: each message once per run, not once per test)."""
    from typer.testing import CliRunner

    from ocrkit.cli.app import app

    with warnings.catch_warnings():
        warnings.simplefilter("default")
        return CliRunner().invoke(app, [str(a) for a in args])


def _library(reader: str, case: Case, root: Path, skip: bool) -> Run:
    from ocrkit.core.data.formats import load_dataset, load_image_paths
    from ocrkit.core.data.scoring import evaluate_dirs

    lines, used, code = [], None, 0
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            if reader == "load_dataset":
                used = len(load_dataset(case.data_path(root), skip).samples)
            elif reader == "load_image_paths":
                used = len(load_image_paths([root / "images"], skip))
            else:
                used = evaluate_dirs(root / "gts", root / "preds", skip).images
        except InputError as err:
            lines.append(f"error: {err}")
            code = 2
    lines = [f"warning: {w.message}" for w in caught] + lines
    return Run(code, "\n".join(lines), None, used)


def _command(command: str, case: Case, root: Path, skip: bool, work: Path, checkpoint: Path | None) -> Run:
    out = work / "out" / f"{case.name}-{command.replace(' ', '-')}{'-skip' if skip else ''}"
    flag = ["--skip-bad"] if skip else []
    data = case.data_path(root)
    args: list = {
        "data check": ["data", "check", data, *flag],
        "train": ["train", "--data", data, "--quiet", "--name", out.name, *TINY, *_places(work), *flag],
        "eval": ["eval", "--checkpoint", checkpoint, "--data", data, "--out", out, "--json", *_places(work), *flag],
        "maps precompute": ["maps", "precompute", "--data", data, "--workers", 0, *TINY, *_places(work), *flag],
        "predict": ["predict", "--checkpoint", checkpoint, root / "images", "--out", out, *_places(work), *flag],
        "eval files": ["eval", "--gt-dir", root / "gts", "--pred-dir", root / "preds", "--json", *flag],
    }[command]
    result = _invoke(args)
    return Run(result.exit_code, result.output, result.exception, _used(command, result))


def _used(command: str, result) -> int | None:
    """How many samples (images) the command read, from what it printed (None: it does not say)."""
    if result.exit_code != 0 or command == "train":
        return None
    if command in ("eval", "eval files"):
        return json.loads(result.stdout)["images"]
    if command == "predict":
        return len(re.findall(r": \d+ text regions$", result.stdout, flags=re.MULTILINE))
    pattern = {"data check": r": (\d+) samples, ", "maps precompute": r"maps for (\d+) samples"}[command]
    match = re.search(pattern, result.stdout)
    assert match, result.stdout
    return int(match.group(1))


def _check(expect: Expect, run: Run, root: Path, skip: bool, reader: str) -> str:
    """Assert what ``expect`` says about ``run``; returns the table's outcome label."""
    assert "Traceback" not in run.output, run.output
    assert run.exception is None or isinstance(run.exception, SystemExit), repr(run.exception)
    lines = run.lines
    errors = [line for line in lines if line.startswith("error:")]
    warned = [line for line in lines if line.startswith("warning:")]
    if expect.outcome == "error" and not (skip and expect.skippable):
        assert run.exit_code != 0, run.output
        assert len(lines) == 1 and errors, run.output  # exactly one line, and it is the error
        for fragment in (expect.place(root), expect.says, *expect.also):
            assert fragment in errors[0], f"{fragment!r} not in {errors[0]!r}"
        return "error"
    assert run.exit_code == 0, run.output
    assert not errors, run.output
    if reader == "train":
        assert "final loss" in run.output, run.output
    if run.used is not None:
        assert run.used == expect.left, f"{reader} read {run.used} samples, expected {expect.left}\n{run.output}"
    if expect.outcome == "error":  # --skip-bad
        skipping = [line for line in warned if line.startswith("warning: skipping bad sample: ")]
        assert len(skipping) == expect.bad, run.output
        for fragment in (expect.place(root), expect.says, *expect.also):
            assert fragment in skipping[0], f"{fragment!r} not in {skipping[0]!r}"
        what = "image(s)" if reader in ("predict", "load_image_paths") else "sample(s)"
        assert any(line.endswith(f"skipped {expect.bad} bad {what}") for line in warned), run.output
        return "skipped"
    if expect.outcome == "warn":
        assert any(expect.place(root) in line and expect.says in line for line in warned), (
            f"no warning naming {expect.place(root)!r} with {expect.says!r}:\n{run.output}"
        )
        return "warn"
    assert not warned, run.output
    return "ok"


def _through(
    readers, case: Case, corpus_root: Path, work: Path | None = None, checkpoint: Path | None = None
) -> list[str]:
    """Run ``case`` through each reader that has an expectation for it; every run is checked
    against the expectation (``_check``). Returns the outcome of each run."""
    root = corpus_root / case.name
    outcomes: list[str] = []
    for reader in readers:
        expect: Expect | None = getattr(case, READS[reader])
        if expect is None:
            continue
        variants = (False, True) if expect.outcome == "error" and expect.skippable else (False,)
        for skip in variants:
            if reader in LIBRARY:
                run = _library(reader, case, root, skip)
            else:
                assert work is not None
                run = _command(reader, case, root, skip, work, checkpoint)
            try:
                label = _check(expect, run, root, skip, reader)
            except AssertionError as exc:
                raise AssertionError(
                    f"{case.name} ({case.kind}) through {reader}{' --skip-bad' * skip}: {exc}"
                ) from None
            TABLE[(case.kind, reader)][label] += 1
            RAN["library" if reader in LIBRARY else "commands"].add(case.name)
            outcomes.append(label)
    return outcomes


# ---------------------------------------------------------------- the tests


def test_the_corpus_is_large_deterministic_and_named():
    assert len(CORPUS) >= 500
    again = build_corpus(SEED)
    assert [(c.name, c.files) for c in again] == [(c.name, c.files) for c in CORPUS]
    assert len({c.name for c in CORPUS}) == len(CORPUS)
    for case in CORPUS:
        expects = [e for e in (case.data, case.images, case.scores) if e is not None]
        assert expects, case.name
        for expect in expects:
            assert expect.outcome in ("error", "warn", "ok")
            assert expect.outcome == "ok" or expect.file is not None, case.name
    outcomes = Counter(e.outcome for c in CORPUS for e in (c.data, c.images, c.scores) if e is not None)
    assert outcomes["error"] >= 400 and outcomes["warn"] >= 40 and outcomes["ok"] >= 40


@pytest.mark.parametrize("case", CORPUS, ids=lambda c: c.name)
def test_every_case_through_the_library_readers(case, corpus_root):
    outcomes = _through(LIBRARY, case, corpus_root)
    assert outcomes and set(outcomes) <= OUTCOMES, (case.name, outcomes)


@pytest.mark.parametrize("case", SAMPLE, ids=lambda c: c.name)
def test_a_sample_through_every_command(case, corpus_root, work, checkpoint):
    outcomes = _through(COMMANDS, case, corpus_root, work, checkpoint)
    assert outcomes and set(outcomes) <= OUTCOMES, (case.name, outcomes)


def _asked_for_slow(config) -> bool:
    expression = config.getoption("markexpr") or ""
    return "slow" in expression and "not slow" not in expression


@pytest.mark.slow
@pytest.mark.parametrize("case", [c for c in CORPUS if c not in SAMPLE], ids=lambda c: c.name)
def test_the_whole_corpus_through_every_command(case, corpus_root, work, checkpoint, request):
    if not _asked_for_slow(request.config):
        pytest.skip("the whole corpus through every command: pytest -m slow (make test-slow)")
    outcomes = _through(COMMANDS, case, corpus_root, work, checkpoint)
    assert outcomes and set(outcomes) <= OUTCOMES, (case.name, outcomes)


@pytest.mark.parametrize("folder", ["scans[/b]", "scans[bold]"])
def test_a_message_with_square_brackets_is_printed_as_it_is(tmp_path, folder):
    """Paths and transcriptions may hold square brackets; the CLI prints them as they are (a
    '[/b]' read as markup raised MarkupError, a traceback; '[bold]' vanished)."""
    from conftest import assert_one_line_error, run

    assert_one_line_error(run("data", "check", tmp_path / folder / "set"), f"{folder}/set: data path not found")
