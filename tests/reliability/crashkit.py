"""Kill `ocrkit` commands at chosen points, fast: a fork server for the crash and store-fault tests.

Starting `python -m ocrkit train` costs 10-15 s here, almost all of it imports (torch, its
dynamo, albumentations), against about 2 s of training for the tiny runs the tests make. The
server imports once and forks one child per command; the child becomes its own session (so a
SIGKILL of its process group takes its DataLoader workers and pool processes with it and nothing
else), points stdout/stderr at a log file and runs the real CLI entry point, `ocrkit.cli.app`,
with the given arguments. What the kill tests care about, the files a killed process leaves,
is the same as for a process started from scratch; one test also kills a real `python -m
ocrkit train` to be sure.

Kill points, installed in the child before the command runs (they are inherited by the
processes it forks; each process counts its own calls):

- ``step``: the n-th optimizer step (``PrecisionPolicy.step``), before or after the update;
- ``validation``: the n-th JSON file validation writes (per-image predictions, metrics.json);
- ``checkpoint``: the n-th checkpoint save, with the temp file half written (``torn``), complete
  but not renamed (``written``), or renamed but its directory not yet synced (``renamed``);
- ``store``: the n-th store value file, half written (``torn``) or complete but its index row
  not committed (``unrecorded``);
- a wall-clock delay after the start (``wait(pid, kill_after_s=...)``), from the server.

And one fault that is not a kill: ``fail-writes`` makes every store value write fail with
``errno`` after its first piece (a disk that fills up, a store made read-only).

Protocol: one JSON object a line on stdin, one answer a line on stdout.
"""

from __future__ import annotations

import json
import os
import select
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
KILLED = -signal.SIGKILL


# ---------------------------------------------------------------- client (the test process)


class ForkServer:
    """A server process that has imported ocrkit's training stack and forks commands from it."""

    def __init__(self, env: dict[str, str] | None = None):
        self.proc = subprocess.Popen(
            [sys.executable, __file__],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            env={**os.environ, **(env or {})},
            text=True,
            cwd=REPO,
        )
        assert self._read(600.0) == {"ready": True}

    def _read(self, timeout: float) -> Any:
        assert self.proc.stdout is not None
        ready, _, _ = select.select([self.proc.stdout], [], [], timeout)
        if not ready:
            raise TimeoutError(f"fork server: no answer in {timeout:.0f} s")
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError(f"fork server exited ({self.proc.wait()})")
        return json.loads(line)

    def _ask(self, request: dict[str, Any], timeout: float = 600.0) -> Any:
        assert self.proc.stdin is not None
        self.proc.stdin.write(json.dumps(request) + "\n")
        self.proc.stdin.flush()
        answer = self._read(timeout)
        if "error" in answer:
            raise RuntimeError(answer["error"])
        return answer

    def start(self, argv: list[str], log: Path, kill: dict[str, Any] | None = None, env=None, out=None) -> int:
        """Fork ``ocrkit <argv>`` (``kill``: a kill point, as in the module docstring); its pid.
        Output goes to ``log`` (stdout to ``out`` when given)."""
        request = {"op": "start", "argv": argv, "log": str(log), "kill": kill, "env": env or {}}
        request["out"] = str(out or log)
        return int(self._ask(request)["pid"])

    def wait(self, pid: int, kill_after_s: float | None = None, timeout: float = 300.0) -> int:
        """The command's exit code, or -9 when it was killed (by its kill point, or here after
        ``kill_after_s`` seconds from its start)."""
        return int(self._ask({"op": "wait", "pid": pid, "kill_after_s": kill_after_s, "timeout": timeout})["code"])

    def run(self, argv: list[str], log: Path, kill=None, kill_after_s=None, env=None, out=None) -> int:
        return self.wait(self.start(argv, log, kill, env, out), kill_after_s)

    def close(self) -> None:
        if self.proc.poll() is None:
            assert self.proc.stdin is not None
            self.proc.stdin.close()
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


# ---------------------------------------------------------------- kill points (in the child)


def _die() -> None:
    """SIGKILL this command's whole process group (the child made itself a session leader)."""
    group = int(os.environ["CRASHKIT_GROUP"])
    assert os.getpgid(0) == group, "refusing to kill a process group this command does not lead"
    os.killpg(group, signal.SIGKILL)
    time.sleep(60)  # not reached


def _counter(n: int):
    calls = {"n": 0}

    def due() -> bool:
        calls["n"] += 1
        return calls["n"] == n

    return due


def install_kill_point(spec: dict[str, Any]) -> None:
    phase, due, variant = spec["phase"], _counter(int(spec.get("nth", 0))), spec.get("variant")
    if phase == "step":
        from ocrkit.core.engine.precision import PrecisionPolicy

        original_step = PrecisionPolicy.step

        def step(self, *args, **kwargs):
            hit = due()
            if hit and variant == "before":
                _die()
            outcome = original_step(self, *args, **kwargs)
            if hit:
                _die()
            return outcome

        PrecisionPolicy.step = step  # type: ignore[method-assign]
    elif phase == "validation":
        from ocrkit.core.engine import inference

        original_json = inference._write_json

        def write_json(path, payload, *args, **kwargs):
            if due():
                _die()
            return original_json(path, payload, *args, **kwargs)

        inference._write_json = write_json
    elif phase == "checkpoint":
        import io

        import torch

        from ocrkit.core import atomic

        original_save, original_replace = torch.save, os.replace
        pending = {"rename": False}

        def save(obj, f, *args, **kwargs):
            if not due():
                return original_save(obj, f, *args, **kwargs)
            if variant == "torn":
                buffer = io.BytesIO()
                original_save(obj, buffer, *args, **kwargs)
                data = buffer.getvalue()
                with open(f, "wb") as handle:
                    handle.write(data[: len(data) // 2])
                _die()
            original_save(obj, f, *args, **kwargs)
            if variant == "written":
                _die()
            pending["rename"] = True  # "renamed": die right after the rename

        def replace(src, dst, *args, **kwargs):
            original_replace(src, dst, *args, **kwargs)
            if pending["rename"]:
                _die()

        torch.save = save
        atomic.os.replace = replace  # type: ignore[attr-defined]
    elif phase == "store":
        from ocrkit.core.store import store

        original_write = store._EntryDisk._write

        def write(self, full_path, iterator, mode, encoding=None):
            if not due():
                return original_write(self, full_path, iterator, mode, encoding)
            if variant == "torn":
                first = bytes(next(iter(iterator)))
                os.makedirs(os.path.dirname(full_path), exist_ok=True)
                with open(full_path, mode) as handle:
                    handle.write(first[: max(1, len(first) // 2)])
                _die()
            size = original_write(self, full_path, iterator, mode, encoding)
            _die()
            return size

        store._EntryDisk._write = write  # type: ignore[method-assign]
    elif phase == "fail-writes":
        from ocrkit.core.store import store

        original_write, code = store._EntryDisk._write, int(spec["errno"])

        def failing(iterator):
            yield next(iter(iterator))
            raise OSError(code, os.strerror(code))

        def write_fails(self, full_path, iterator, mode, encoding=None):
            return original_write(self, full_path, failing(iterator), mode, encoding)

        store._EntryDisk._write = write_fails  # type: ignore[method-assign]
    else:
        raise ValueError(f"unknown kill phase {phase!r}")


# ---------------------------------------------------------------- server


def _child(request: dict[str, Any]) -> None:
    """In the forked child: become a session, redirect output, run the command, exit."""
    code = 1
    try:
        os.setsid()
        os.environ["CRASHKIT_GROUP"] = str(os.getpgid(0))
        os.environ.update(request["env"])
        flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC
        log = os.open(request["log"], flags, 0o644)
        out = log if request["out"] == request["log"] else os.open(request["out"], flags, 0o644)
        null = os.open(os.devnull, os.O_RDONLY)
        os.dup2(null, 0)
        os.dup2(out, 1)
        os.dup2(log, 2)
        if request["kill"]:
            install_kill_point(request["kill"])
        from ocrkit.cli.app import app

        try:
            app(args=request["argv"], prog_name="ocrkit")
            code = 0
        except SystemExit as exit_:
            code = exit_.code if isinstance(exit_.code, int) else (0 if exit_.code is None else 1)
    except BaseException:  # noqa: BLE001 - report anything as the child's failure
        import traceback

        traceback.print_exc()
    finally:
        try:
            sys.stdout.flush()
            sys.stderr.flush()
            import atexit

            atexit._run_exitfuncs()  # what a normal exit runs: the store drains its writes
        finally:
            os._exit(code)


def _wait(pid: int, kill_after_s: float | None, timeout: float, started: float) -> int:
    deadline = started + timeout
    while True:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            return os.waitstatus_to_exitcode(status)
        now = time.monotonic()
        if kill_after_s is not None and now - started >= kill_after_s:
            os.killpg(pid, signal.SIGKILL)
            kill_after_s = None
        elif now > deadline:
            os.killpg(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
            raise TimeoutError(f"command {pid} ran over {timeout:.0f} s")
        time.sleep(0.002)


def serve() -> None:
    import PIL.JpegImagePlugin  # noqa: F401
    import scipy.linalg  # noqa: F401
    import torch._dynamo  # noqa: F401 - the first optimizer imports it (4 s)
    import torch.utils.tensorboard  # noqa: F401

    import ocrkit.cli.app  # noqa: F401 - what every command needs
    import ocrkit.core.data.precompute  # noqa: F401
    import ocrkit.core.data.store_commands  # noqa: F401
    import ocrkit.core.engine.train_job  # noqa: F401
    from ocrkit.core.geometry.maps import compile_kernels

    compile_kernels()  # numba's machine code loaded once (1.4 s a process), plain numpy: no threads

    started: dict[int, float] = {}
    print(json.dumps({"ready": True}), flush=True)
    for line in sys.stdin:
        request = json.loads(line)
        try:
            if request["op"] == "start":
                sys.stdout.flush()
                pid = os.fork()
                if pid == 0:
                    _child(request)
                started[pid] = time.monotonic()
                answer: dict[str, Any] = {"pid": pid}
            elif request["op"] == "wait":
                pid = request["pid"]
                answer = {"code": _wait(pid, request["kill_after_s"], request["timeout"], started.pop(pid))}
            else:
                answer = {"error": f"unknown op {request['op']!r}"}
        except Exception as exc:  # noqa: BLE001 - the client raises it
            answer = {"error": f"{exc.__class__.__name__}: {exc}"}
        print(json.dumps(answer), flush=True)


if __name__ == "__main__":
    serve()
