"""The malformed-input corpus (tests/reliability/corpus.py) through every reader.

Every case goes through the library readers (``load_dataset``, the image list ``predict`` reads,
``evaluate_dirs``), plainly and with ``skip_bad``. What each must do (``Expect`` in corpus.py): an
``error`` is one ``InputError`` line naming the expected file and line or key path; with
``skip_bad`` (where the sample can be skipped) one ``skipping bad sample`` warning per bad sample
naming it, the final count, and the good samples used. A ``warn`` is a warning naming the place;
``ok`` is neither. The case count and the outcome table (kind x reader) are printed at the end.
"""

from __future__ import annotations

import warnings
from collections import Counter, defaultdict
from dataclasses import dataclass
from pathlib import Path

import pytest
from corpus import Case, Expect, build_corpus, kinds, sample_cases, write_case

from conftest import set_args
from ocrkit.core.errors import InputError

SEED = 0
CLI_SAMPLE = 40
CORPUS = build_corpus(SEED)
SAMPLE = sample_cases(CORPUS, CLI_SAMPLE, SEED)

LIBRARY = ("load_dataset", "load_image_paths", "evaluate_dirs")
COMMANDS = ("data check", "train", "eval", "maps precompute", "predict", "eval files")
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


# ---------------------------------------------------------------- running a reader


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


def _through(readers, case: Case, corpus_root: Path):
    root = corpus_root / case.name
    for reader in readers:
        expect: Expect | None = getattr(case, READS[reader])
        if expect is None:
            continue
        variants = (False, True) if expect.outcome == "error" and expect.skippable else (False,)
        for skip in variants:
            run = _library(reader, case, root, skip)
            try:
                label = _check(expect, run, root, skip, reader)
            except AssertionError as exc:
                raise AssertionError(
                    f"{case.name} ({case.kind}) through {reader}{' --skip-bad' * skip}: {exc}"
                ) from None
            TABLE[(case.kind, reader)][label] += 1
            RAN["library" if reader in LIBRARY else "commands"].add(case.name)


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
    _through(LIBRARY, case, corpus_root)
