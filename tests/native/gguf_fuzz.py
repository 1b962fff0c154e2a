"""Run GGUF mutations through a worker subprocess and record how each load ended.

A worker loads path after path; when it dies by a signal (or hangs past the timeout) the
case it was given last is a crash and a fresh worker takes the rest. Command line (the slow
profile, nightly)::

    python tests/native/gguf_fuzz.py --random 500 [--seed N] [--model tiny-llama ...]

prints ``crashes found = N over M mutations`` and each crash's label.
"""

from __future__ import annotations

import argparse
import itertools
import os
import select
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
WORKER = Path(__file__).with_name("gguf_fuzz_worker.py")
sys.path.insert(0, str(REPO))

from tests.native.gguf_mutate import mutations  # noqa: E402


@dataclass
class Outcome:
    label: str
    result: str  # "ok", "err <Type>: <message>", "crash <signal>" or "hang"

    @property
    def crashed(self) -> bool:
        return self.result.startswith(("crash", "hang"))


class _Worker:
    def __init__(self) -> None:
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join([str(REPO), *filter(None, [env.get("PYTHONPATH", "")])])
        self.proc = subprocess.Popen(
            [sys.executable, str(WORKER)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
            env=env,
            cwd=REPO,
        )

    def run(self, path: Path, timeout: float) -> str:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        try:
            self.proc.stdin.write(f"{path}\n")
            self.proc.stdin.flush()
        except BrokenPipeError:
            pass
        deadline = time.monotonic() + timeout
        while True:
            ready, _, _ = select.select([self.proc.stdout], [], [], 0.5)
            if ready:
                line = self.proc.stdout.readline()
                if line:
                    return line.rstrip("\n")
                rc = self.proc.wait(timeout=30)
                return f"crash {_signal_name(rc)}"
            if self.proc.poll() is not None:
                return f"crash {_signal_name(self.proc.returncode)}"
            if time.monotonic() > deadline:
                self.proc.kill()
                self.proc.wait()
                return "hang"

    def close(self) -> None:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        try:
            self.proc.stdin.close()
        except BrokenPipeError:
            pass
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.proc.stdout.close()


def _signal_name(rc: int) -> str:
    if rc < 0:
        try:
            return signal.Signals(-rc).name
        except ValueError:
            return f"signal {-rc}"
    return f"exit {rc}"


def run_cases(
    cases: Iterable[tuple[str, bytes]],
    workdir: Path,
    timeout: float = 60.0,
    progress: bool = False,
) -> list[Outcome]:
    """Load every ``(label, data)`` case in a worker; one :class:`Outcome` per case."""
    outcomes: list[Outcome] = []
    worker: _Worker | None = None
    try:
        for i, (label, data) in enumerate(cases):
            # a fresh name per case: nothing still mapping the last one sees it change
            path = workdir / f"case-{i}.gguf"
            path.write_bytes(data)
            if worker is None:
                worker = _Worker()
            result = worker.run(path, timeout)
            if result.startswith(("crash", "hang")):
                worker.close()
                worker = None
                if progress:
                    print(f"CRASH {label}: {result}", flush=True)
            outcomes.append(Outcome(label, result))
            path.unlink()
    finally:
        if worker is not None:
            worker.close()
    return outcomes


def model_cases(
    model: Path, seed: int, n_random: int, targeted: bool = True
) -> Iterator[tuple[str, bytes]]:
    """The mutations of one model file (made lazily), labelled with the model's name."""
    original = model.read_bytes()
    for label, data in mutations(original, seed, n_random):
        if targeted or label.startswith("bitflip@"):
            yield f"{model.stem}:{label}", data


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--random", type=int, default=500, help="random bit-flip cases per model")
    parser.add_argument("--seed", type=int, default=20261204)
    parser.add_argument("--model", action="append", help="tiny model names (default: all text)")
    parser.add_argument("--targeted", action=argparse.BooleanOptionalAction, default=True)
    parser.add_argument("--log", type=Path, help="write every outcome to this file")
    args = parser.parse_args(argv)
    from build_scripts.make_test_models import ensure_test_models

    models = ensure_test_models()
    names = args.model or ["tiny-llama", "tiny-gemma3", "tiny-bert", "tiny-t5"]
    cases = itertools.chain.from_iterable(
        model_cases(models[name], args.seed, args.random, args.targeted) for name in names
    )
    start = time.monotonic()
    with tempfile.TemporaryDirectory() as tmp:
        outcomes = run_cases(cases, Path(tmp), progress=True)
    crashes = [o for o in outcomes if o.crashed]
    oks = sum(o.result == "ok" for o in outcomes)
    if args.log:
        args.log.write_text("".join(f"{o.label}\t{o.result}\n" for o in outcomes))
    print(
        f"crashes found = {len(crashes)} over {len(outcomes)} mutations "
        f"({oks} loaded and ran, {len(outcomes) - oks - len(crashes)} Python errors, "
        f"{time.monotonic() - start:.0f} s)"
    )
    return 1 if crashes else 0


if __name__ == "__main__":
    raise SystemExit(main())
