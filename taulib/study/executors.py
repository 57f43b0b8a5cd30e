"""Where a study's runs execute: one after another in this process, or as tasks on a Dask cluster.

A run is one task: papermill executes 02_train for one parameter file into outputs/<run_name>/,
exactly as the local study does, so a run's folder does not depend on where it ran. A sweep's λ
calibration is one task per arm (an arm's probes depend on each other; the arms do not).

The failure semantics are the local ones, whatever the backend: a failing run (an exception in its
notebook, or a worker that died under it) is recorded as failed with its error and never stops
the others; the study command exits non-zero when any failed.

Dask distributed was chosen over Ray because it is pure Python (one small wheel, no separate
object store or daemon to run), a local cluster starts in-process for tests and single machines,
and the same `Client(address)` reaches the clusters researchers already have: SLURM or PBS through
dask-jobqueue, Kubernetes through dask-kubernetes, or any `dask scheduler` / `dask worker` pair.
Its workers must share the outputs folder (a shared filesystem) and have taulib installed.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from taulib import atomic
from taulib.progress import PLAIN_ENV

THREAD_VARIABLES = ("OMP_NUM_THREADS", "MKL_NUM_THREADS")


@dataclass(frozen=True)
class RunTask:
    """One training run: execute `template` with `parameters` into `output`; the run writes `summary`."""

    run_name: str
    template: Path
    output: Path
    parameters: dict[str, Any]
    summary: Path


@dataclass
class TaskResult:
    status: str  # ok | failed
    seconds: float = 0.0
    final: dict[str, Any] = field(default_factory=dict)
    error: str | None = None
    worker: str | None = None
    heldout: dict[str, float] = field(default_factory=dict)  # the final checkpoint's held-out figures (`heldout_final`)


def short_error(error: BaseException) -> str:
    """The last lines of an error, joined on one line (papermill's errors carry the whole traceback)."""
    text = str(error).strip().splitlines()
    return " | ".join(line for line in text if line.strip())[-500:] if text else type(error).__name__


# the kernel's own log at errors only: its warning that a local kernel talks over TCP without encryption, printed once per
# run, is nothing a user of the study can act on (the kernel's output and errors still reach the notebook and the console)
KERNEL_ARGUMENTS = ["--IPKernelApp.log_level=ERROR"]


def execute_notebook(notebook: Path, output: Path, parameters: dict[str, Any]) -> None:
    """Run a notebook with papermill, writing the executed copy atomically (failed ones too)."""
    import papermill

    output.parent.mkdir(parents=True, exist_ok=True)
    partial = output.with_name(f".{output.name}.partial.ipynb")
    try:
        papermill.execute_notebook(
            str(notebook),
            str(partial),
            parameters=parameters,
            kernel_name="python3",
            cwd=str(notebook.parent),
            progress_bar=False,
            log_output=True,
            extra_arguments=KERNEL_ARGUMENTS,
        )
    except KeyboardInterrupt:
        # stopped mid-write, the copy may be torn; the rerun executes the notebook again
        partial.unlink(missing_ok=True)
        raise
    finally:
        if partial.exists():
            os.replace(partial, output)


def execute_run_task(task: RunTask, threads: int | None = None) -> TaskResult:
    """Run one task and report how it went; never raises for a failing run (the caller records it)."""
    os.environ.setdefault(PLAIN_ENV, "plain")  # the kernel inherits it: progress as text lines
    if threads:  # the kernel's torch reads these when it starts
        os.environ.update({name: str(threads) for name in THREAD_VARIABLES})
    started = time.perf_counter()
    try:
        execute_notebook(task.template, task.output, task.parameters)
        final = atomic.read_json(task.summary).get("final", {})
        return TaskResult("ok", time.perf_counter() - started, final, worker=_worker_name(), heldout=heldout_final(task.summary.parent))
    except Exception as error:
        return TaskResult("failed", time.perf_counter() - started, error=short_error(error), worker=_worker_name())


HELDOUT_COLUMNS = ("l0", "explained_variance", "ce_loss_score")


def heldout_final(run_dir: Path) -> dict[str, float]:
    """The run's last evaluated checkpoint on held-out tokens (evaluation/metrics.csv): what a run is judged by, unlike its
    last training batch (summary.json's `final`); {} for a run not evaluated."""
    path = run_dir / "evaluation" / "metrics.csv"
    if not path.is_file():
        return {}
    import pandas as pd  # the executor's workers need it only here

    last = pd.read_csv(path).sort_values("step").iloc[-1]
    return {"step": float(last["step"]), **{column: float(last[column]) for column in HELDOUT_COLUMNS if column in last and pd.notna(last[column])}}


def _worker_name() -> str | None:
    try:
        from distributed import get_worker

        return str(get_worker().address)
    except (ImportError, ValueError):  # not inside a Dask worker
        return None


class Executor(Protocol):
    """Runs a study's tasks; `run_tasks` returns one result per task, in the tasks' order."""

    name: str

    def run_tasks(self, tasks: Sequence[RunTask], on_result: Callable[[int, TaskResult], None] | None = None) -> list[TaskResult]: ...

    def map_calls(self, function: Callable[..., Any], arguments: Sequence[tuple[Any, ...]]) -> list[Any]: ...


class LocalExecutor:
    """Every task in this process, one after another (the default)."""

    name = "local"

    def run_tasks(self, tasks: Sequence[RunTask], on_result: Callable[[int, TaskResult], None] | None = None) -> list[TaskResult]:
        results = []
        for index, task in enumerate(tasks):
            results.append(execute_run_task(task))
            if on_result is not None:
                on_result(index, results[-1])
        return results

    def map_calls(self, function: Callable[..., Any], arguments: Sequence[tuple[Any, ...]]) -> list[Any]:
        return [function(*args) for args in arguments]


class DaskExecutor:
    """Tasks on a Dask distributed cluster: an existing one (`scheduler` address) or a local one of
    `workers` processes. `threads_per_run` caps each run's torch threads (default: a local
    cluster's cores divided among its workers; on an existing cluster, each worker's own threads)."""

    name = "dask"

    def __init__(self, scheduler: str | None = None, workers: int | None = None, threads_per_run: int | None = None) -> None:
        try:
            from distributed import Client, LocalCluster
        except ImportError:
            raise ImportError("the dask backend needs dask distributed: pip install 'taulib[distributed]'") from None
        if scheduler is not None and workers is not None:
            raise ValueError("give either a scheduler address (an existing cluster) or a number of local workers, not both")
        for name, value in (("workers", workers), ("threads_per_run", threads_per_run)):
            if value is not None and value < 1:
                raise ValueError(f"{name} must be at least 1, got {value}")
        self.cluster = None
        if scheduler is None:
            n_workers = 2 if workers is None else workers
            threads_per_run = threads_per_run or max(1, (os.cpu_count() or 1) // n_workers)
            # one task at a time per worker process: a run is a whole papermill kernel
            self.cluster = LocalCluster(n_workers=n_workers, threads_per_worker=1, processes=True, dashboard_address=None)
            self.client = Client(self.cluster)
        else:
            self.client = Client(scheduler)
        self.threads_per_run = threads_per_run

    def run_tasks(self, tasks: Sequence[RunTask], on_result: Callable[[int, TaskResult], None] | None = None) -> list[TaskResult]:
        from distributed import as_completed

        futures = [self.client.submit(execute_run_task, task, self.threads_per_run, key=f"run-{task.run_name}-{time.time_ns()}", pure=False) for task in tasks]
        position = {future.key: index for index, future in enumerate(futures)}
        results: list[TaskResult] = [TaskResult("failed", error="not run")] * len(tasks)
        for future in as_completed(futures):
            index = position[future.key]
            try:
                results[index] = future.result()
            except Exception as error:  # the task did not return: its worker died (KilledWorker) or the cluster went away
                results[index] = TaskResult("failed", error=f"the task did not finish on the cluster: {short_error(error)}")
            if on_result is not None:
                on_result(index, results[index])
        return results  # as_completed yields every future: no None is left

    def map_calls(self, function: Callable[..., Any], arguments: Sequence[tuple[Any, ...]]) -> list[Any]:
        """Call `function(*args)` for each tuple on the cluster; the first exception is raised here."""
        futures = [self.client.submit(_with_threads, function, self.threads_per_run, *args, pure=False) for args in arguments]
        return self.client.gather(futures)

    def close(self) -> None:
        self.client.close()
        if self.cluster is not None:
            self.cluster.close()

    def __enter__(self) -> DaskExecutor:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _with_threads(function: Callable[..., Any], threads: int | None, *args: Any) -> Any:
    """Run an in-process task (a sweep arm's calibration) with the run's thread budget."""
    if threads:
        import torch

        torch.set_num_threads(threads)
    return function(*args)
