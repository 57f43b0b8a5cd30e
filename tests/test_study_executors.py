"""Where runs execute: the local executor and a local Dask cluster of two workers give the same
results and the same failure semantics (a failing run is recorded, the others finish)."""

import json

import nbformat
import pytest

from taulib.study.executors import DaskExecutor, LocalExecutor, RunTask

pytestmark = pytest.mark.notebook
SLEEP = 6.0  # seconds each task of the Dask test sleeps: longer than a kernel takes to start

# a stand-in for 02_train: papermill parameters, a run that writes summary.json, and ways to fail
TEMPLATE_SOURCE = [
    ("summary_path = ''\nbehaviour = 'ok'\nsleep_seconds = 0.0", ["parameters"]),
    (
        "import json, os, time\n"
        "started = time.time()\n"
        "open(summary_path + '.started', 'w').write(repr(started))\n"
        "time.sleep(sleep_seconds)\n"
        "if behaviour == 'raise':\n"
        "    raise RuntimeError('this run diverged')\n"
        "if behaviour == 'kill_kernel':\n"
        "    os._exit(3)\n"
        "threads = os.environ.get('OMP_NUM_THREADS')\n"
        "json.dump({'final': {'started': started, 'ended': time.time(), 'pid': os.getpid(), 'threads': threads}}, open(summary_path, 'w'))",
        [],
    ),
]


@pytest.fixture(scope="module")
def template(tmp_path_factory):
    path = tmp_path_factory.mktemp("template") / "run.ipynb"
    notebook = nbformat.v4.new_notebook()
    notebook.cells = [nbformat.v4.new_code_cell(source, metadata={"tags": tags}) for source, tags in TEMPLATE_SOURCE]
    notebook.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(notebook, path)
    return path


def _tasks(template, outputs, behaviours, sleep_seconds=0.0):
    tasks = []
    for index, behaviour in enumerate(behaviours):
        folder = outputs / f"run{index}"
        folder.mkdir(parents=True)
        summary = folder / "summary.json"
        parameters = {"summary_path": str(summary), "behaviour": behaviour, "sleep_seconds": sleep_seconds}
        tasks.append(RunTask(f"run{index}", template, folder / "02_train.ipynb", parameters, summary))
    return tasks


def _check_failure_semantics(tasks, results):
    assert [r.status for r in results] == ["ok", "failed", "ok", "failed"]
    assert "this run diverged" in results[1].error
    assert "kernel died" in results[3].error.lower() or "dead" in results[3].error.lower(), results[3].error
    for task in tasks:  # every run keeps its executed notebook, the failed ones too
        assert task.output.is_file() and not list(task.output.parent.glob(".*.partial.ipynb"))
    failed = nbformat.read(tasks[1].output, as_version=4)
    assert any(output.get("output_type") == "error" for cell in failed.cells for output in cell.get("outputs", []))
    for index in (0, 2):
        assert results[index].final == json.loads(tasks[index].summary.read_text())["final"]


def test_local_executor_runs_in_order_and_records_failures(template, tmp_path):
    tasks = _tasks(template, tmp_path, ["ok", "raise", "ok", "kill_kernel"])
    seen = []
    results = LocalExecutor().run_tasks(tasks, on_result=lambda index, result: seen.append(index))
    assert seen == [0, 1, 2, 3]
    _check_failure_semantics(tasks, results)
    assert results[0].final["ended"] <= results[2].final["started"]  # one after another


def test_dask_cluster_of_two_workers_runs_tasks_in_parallel_with_the_same_semantics(template, tmp_path):
    tasks = _tasks(template, tmp_path, ["ok", "raise", "ok", "kill_kernel"], sleep_seconds=SLEEP)
    with DaskExecutor(workers=2, threads_per_run=1) as executor:
        seen = []
        results = executor.run_tasks(tasks, on_result=lambda index, result: seen.append(index))
        assert sorted(seen) == [0, 1, 2, 3]
        _check_failure_semantics(tasks, results)
        assert len({r.worker for r in results}) == 2 and all(r.worker.startswith("tcp://") for r in results)
        assert all(results[i].final["threads"] == "1" for i in (0, 2))  # the run's thread budget reached its kernel
        # two workers: the second task started while the first was still asleep
        starts = sorted(float(t.summary.with_name("summary.json.started").read_text()) for t in tasks)
        assert starts[1] < starts[0] + SLEEP, starts

        # in-process calls (a sweep's per-arm calibration): results in order, and the first error raised here
        assert executor.map_calls(pow, [(2, 3), (3, 2)]) == [8, 9]
        with pytest.raises(ZeroDivisionError):
            executor.map_calls(divmod, [(1, 0)])


def test_dask_executor_refuses_two_cluster_choices():
    with pytest.raises(ValueError, match="either a scheduler address"):
        DaskExecutor(scheduler="tcp://127.0.0.1:1", workers=2)


@pytest.mark.parametrize(
    ("options", "message"), [({"workers": 0}, "workers must be at least 1, got 0"), ({"threads_per_run": -1}, "threads_per_run must be at least 1")]
)
def test_dask_executor_refuses_impossible_sizes_before_starting_a_cluster(options, message):
    with pytest.raises(ValueError, match=message):
        DaskExecutor(**options)
