"""Benchmark cells in workers: each cell runs in a fresh interpreter
(``python SCRIPT --worker KIND SPEC_JSON``, printing ``RESULT <json>``), so
the peak memory a cell reports is its own; on CUDA, ``--in-process`` runs
them here instead. Used by bench_backbones.py, bench_detectors.py and
compat_matrix.py."""
import json
import os
import subprocess
import sys
from typing import NamedTuple, Optional


RESULT_MARK = 'RESULT '


class WorkerRun(NamedTuple):
    """What a worker process left: its ``RESULT`` dict (None when it
    printed none), its output, and its exit code (None: timed out)."""
    result: Optional[dict]
    stdout: str
    stderr: str
    returncode: Optional[int]


def print_result(result: dict) -> None:
    """The worker's side of the protocol: one ``RESULT <json>`` line."""
    print(RESULT_MARK + json.dumps(result), flush=True)


def _text(out) -> str:
    return out.decode(errors='replace') if isinstance(out, bytes) else (
        out or '')


def run_worker_process(script: str, kind: str, spec: dict, timeout: float,
                       cwd: Optional[str] = None,
                       env: Optional[dict] = None) -> WorkerRun:
    """``python SCRIPT --worker KIND SPEC_JSON`` in a fresh interpreter:
    the protocol every measurement here shares (the script answers with
    :func:`print_result`)."""
    cmd = [sys.executable, os.path.abspath(script), '--worker', kind,
           json.dumps(spec)]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, env=env,
                              timeout=timeout, cwd=cwd)
    except subprocess.TimeoutExpired as e:
        return WorkerRun(None, _text(e.stdout), _text(e.stderr), None)
    results = [ln[len(RESULT_MARK):] for ln in proc.stdout.splitlines()
               if ln.startswith(RESULT_MARK)]
    return WorkerRun(json.loads(results[-1]) if results else None,
                     proc.stdout, proc.stderr, proc.returncode)


def run_worker(script: str, kind: str, spec: dict, timeout: float,
               cwd: Optional[str] = None, **env) -> Optional[dict]:
    """A benchmark cell in a fresh interpreter (:func:`run_worker_process`)
    with ``spec['threads']`` OpenMP / MKL threads (each cell in its own
    process, so peak memory is that cell's alone).

    Returns the worker's result, or ``None`` with a one-line note when the
    worker timed out or failed. ``env`` adds environment variables.
    """
    env = dict(os.environ, OMP_NUM_THREADS=str(spec['threads']),
               MKL_NUM_THREADS=str(spec['threads']), PYTHONWARNINGS='ignore',
               **env)
    label = f'{kind} {spec.get("model", "")} {spec.get("impl", "")}'.strip()
    run = run_worker_process(script, kind, spec, timeout, cwd=cwd, env=env)
    if run.returncode is None:
        print(f'  ! {label} timed out after {timeout:.0f} s', flush=True)
        return None
    if run.result is not None:
        return run.result
    tail = (run.stderr or run.stdout).strip().splitlines()[-4:]
    print(f'  ! {label} failed (exit {run.returncode}): ' + ' | '.join(tail),
          flush=True)
    return None


#: Why ``--in-process`` (both benchmark scripts) is refused off CUDA.
IN_PROCESS_NEEDS_CUDA = (
    "--in-process needs --device cuda: on the CPU the peak memory is the "
    "process's, so every cell needs its own process")


def dispatch_worker(script: str, workers: dict, kind: str, spec: dict,
                    timeout: float, in_process: bool = False,
                    cwd: Optional[str] = None, **env) -> Optional[dict]:
    """One benchmark cell: :func:`run_worker` (a fresh interpreter running
    ``script``), or with ``in_process`` :func:`call_in_process` of
    ``workers[kind]`` here, with ``env`` set in this process instead."""
    if in_process:
        os.environ.update(env)
        return call_in_process(workers[kind], spec)
    return run_worker(script, kind, spec, timeout, cwd=cwd, **env)


def call_in_process(fn, spec: dict) -> Optional[dict]:
    """``fn(spec)`` in this interpreter, the in-process counterpart of
    :func:`run_worker` (``--in-process`` of the benchmark scripts): no
    import cost per cell, no isolation. Only for CUDA, where peak memory is
    ``torch.cuda.max_memory_allocated`` after a reset and does not need a
    fresh process; freed memory is returned to the driver after each cell.
    Returns ``None`` with a one-line note when ``fn`` raises."""
    import gc
    label = f'{spec.get("model", "")} {spec.get("impl", "")}'.strip()
    try:
        return fn(spec)
    except Exception as e:  # a failed cell must not end the whole run
        print(f'  ! {label} failed: {type(e).__name__}: {e}', flush=True)
        return None
    finally:
        import torch
        gc.collect()
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
