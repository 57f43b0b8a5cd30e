"""Keep a playground schedule as an arm file in the parameter folder, so that the batch study runs it.

The file is an arm file as the folder's others are (`inherit:` the shared base, a description, the schedule;
λ is calibrated by the sweep, so none is written). Before anything is written, the folder *with* the new file
is validated exactly as the study validates it: every parameter file (inheritance, the schedule's rules, one
run name a file), the sweep file when there is one, and the ground-truth track's arms. A refusal leaves the
folder untouched and carries the study's own message, naming the file as it would be named in the folder.
"""

from __future__ import annotations

import re
import shutil
import tempfile
from pathlib import Path
from typing import Any

import yaml

from taulib import atomic
from taulib.config import ConfigError, discover_parameter_files, load_study_configs
from taulib.groundtruth import track
from taulib.playground.controls import validated_schedule
from taulib.schedules import kind_spec
from taulib.sweep.spec import SWEEP_FILE, load_sweep

SHARED_BASE = "_study.yaml"  # what every arm file of the default folder inherits
NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")


def arm_file_text(schedule: dict[str, Any], description: str, base: str | None = SHARED_BASE) -> str:
    """The arm file's YAML: the base it inherits, its description and the schedule's keys as given."""
    data: dict[str, Any] = {}
    if base is not None:
        data["inherit"] = base
    data["description"] = description
    data["schedule"] = dict(schedule)
    return "# kept from the τ playground (notebooks/07_tau_playground)\n" + yaml.safe_dump(data, sort_keys=False, allow_unicode=True)


def describe_schedule(schedule: dict[str, Any]) -> str:
    """An arm file's description of a schedule mapping, in the words of the folder's other arm files."""
    spec = kind_spec(str(schedule.get("kind")))
    text = spec.sentence(float(schedule.get("tau_initial", 1.0)), float(schedule.get("tau_final", 1.0)), float(schedule.get("anneal_fraction", 1.0)))
    return f"{text} (kept from the τ playground)."


def same_schedule(schedule: dict[str, Any], parameters_dir: str | Path) -> list[str]:
    """The folder's arm files whose schedule is this one (the study would train it twice)."""
    wanted = validated_schedule(schedule)
    return [config.run_name for _, config in load_study_configs(discover_parameter_files(parameters_dir)) if config.schedule == wanted]


def validate_folder(folder: Path) -> None:
    """The study's checks of a parameter folder (ConfigError on the first refusal)."""
    load_study_configs(discover_parameter_files(folder))
    if (folder / SWEEP_FILE).is_file():
        load_sweep(folder)
    if (folder / track.TRACK_FILE).is_file():
        track.track_arms(folder, track.load_track_config(folder / track.TRACK_FILE))


def keep_schedule(schedule: dict[str, Any], name: str, parameters_dir: str | Path, description: str = "", overwrite: bool = False) -> Path:
    """Write `schedule` (an arm file's `schedule:` mapping) as `<parameters_dir>/<name>.yaml` once the folder with it
    passes the study's validation; its path. Refuses (ConfigError, nothing written) a bad name, an existing file
    unless `overwrite`, and anything the study would refuse."""
    folder = Path(parameters_dir)
    if not folder.is_dir():
        raise ConfigError(f"{folder}: parameter folder not found")
    if not NAME.fullmatch(name) or name.startswith("_"):
        raise ConfigError(f"{name!r}: an arm's name is letters, digits, '_', '.' and '-', not starting with '_' (a shared base)")
    target = folder / f"{name}.yaml"
    if target.exists() and not overwrite:
        raise ConfigError(f"{target} exists already; choose another name (or keep with overwrite)")
    base = SHARED_BASE if (folder / SHARED_BASE).is_file() else None
    text = arm_file_text(schedule, description or describe_schedule(schedule), base)
    with tempfile.TemporaryDirectory(prefix="taulib-keep-") as scratch:
        trial = Path(scratch) / folder.name
        trial.mkdir()
        for path in folder.iterdir():
            if path.is_file() and path.suffix in (".yaml", ".yml"):
                shutil.copy2(path, trial / path.name)
        (trial / target.name).write_text(text)
        try:
            validate_folder(trial)
        except ConfigError as error:
            raise ConfigError(str(error).replace(str(trial), str(folder))) from None
    with atomic.atomic_path(target) as tmp:
        Path(tmp).write_text(text)
    return target
