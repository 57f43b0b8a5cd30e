"""What a study will cost in wall time on this machine, stage by stage, before it starts.

Every stage's time is a size of the plan times a cost per unit that taulib.study.machine_speed measured on
this machine at the plan's shapes (nothing here is a figure from another CPU):

  ground-truth track  (when the study runs it) its pending calibration probes and grid runs shared among its
                      workers, each priced from runs of the design timed here (taulib.groundtruth.cost), then
                      its report;
  extraction          the extraction notebook's start and model load, then every missing cache's
                      tokens through the language model up to the layer (the synthetic model: its
                      dictionary, then every sample drawn from it);
  evaluation inputs   each metric family's inputs prepared once per model and layer (the absorption
                      prompts' and probing texts' tokens through the same forward, the CE sequences'
                      reference: that forward, then the blocks after the hooked one clean and
                      zero-ablated), priced by the family (taulib.metrics.families);
  calibration         a sweep's probes (arms × targets × the probes each target is expected to take),
                      each a training run and a held-out reconstruction;
  runs                per run: its notebook's start, training steps, and every family's evaluation of
                      its checkpoints (the spliced CE/KL: the model load and the blocks after the
                      hooked one on the spliced tokens);
  analysis            each analysis notebook's start and its figures.

What the outputs folder already holds is not priced again: a trained run is not trained, a family's recorded
checkpoints are not evaluated (taulib.metrics.evaluate.checkpoints_to_evaluate), and a sweep target whose λ the
saved calibration accepted needs no probe, its runs priced by what they lack.

Training is timed on dense steps (the early ones); a run whose SAE turns sparse takes the faster
sparse path later, so training is estimated from above. Sizes that only a run reveals (how many
probes a target takes, which run diverges) are taken at their expected value.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from taulib import atomic
from taulib.activations.cache import SPLITS, activation_spec, cache_folder, is_complete
from taulib.activations.models import EMBEDDED_MODEL, model_footprint, resolve_layer
from taulib.config import RunConfig
from taulib.metrics.evaluate import checkpoints_to_evaluate, evaluation_data_complete, evaluation_data_folder
from taulib.metrics.families import BY_NAME, evaluated
from taulib.precision import resolve_compute_dtype
from taulib.progress import progress_bar
from taulib.study import machine_speed as speed
from taulib.sweep.calibration import CALIBRATION_VERSION, target_window
from taulib.sweep.runs import SWEEPS_FOLDER, calibration_key
from taulib.sweep.spec import Sweep, SweepArm, identity_l1_coefficient, run_config
from taulib.timing import BUSY_CORES, SpeedCache, busy_cores
from taulib.train.trainer import training_checkpoint_steps

STAGES = ("ground-truth track", "extraction", "evaluation inputs", "calibration", "runs", "analysis")
# A target's search: a first probe, usually one secant step from it (taulib.sweep.calibration); later targets
# start from a measured slope. The bound is max_probes_per_target.
EXPECTED_PROBES_PER_TARGET = 2.0
ANALYSIS_NOTEBOOKS = 3  # 03, 04 and 06; a sweep adds 05_report


@dataclass(frozen=True)
class StageEstimate:
    stage: str
    seconds: float
    detail: str


@dataclass
class StudyEstimate:
    """The estimated wall time of each stage, and of each run (by name, where the runs are known)."""

    stages: list[StageEstimate]
    runs: dict[str, float] = field(default_factory=dict)
    machine: str = ""
    measured_now: list[str] = field(default_factory=list)  # measurements this estimate had to make
    busy_while_timed: dict[str, float] = field(default_factory=dict)  # per timing made now or used marked busy: cores other work kept busy
    cores: int = 1
    cache_file: str = ""  # where the timings are kept (taulib.timing.SpeedCache)

    @property
    def total(self) -> float:
        return sum(stage.seconds for stage in self.stages)

    def seconds(self, stage: str) -> float:
        return next((s.seconds for s in self.stages if s.stage == stage), 0.0)

    def describe(self) -> str:
        lines = [f"wall time, estimated for this machine ({self.machine}):"]
        lines += [f"  {s.stage:18s} {_duration(s.seconds):>9s}  {s.detail}" for s in self.stages]
        lines.append(f"  {'total':18s} {_duration(self.total):>9s}")
        busy = {name: cores for name, cores in self.busy_while_timed.items() if cores >= BUSY_CORES}
        if busy:
            lines.append(
                f"  warning: {len(busy)} of the timings this estimate uses ran while other processes kept up to "
                f"{max(busy.values()):.1f} of {self.cores} cores busy: they, and this estimate, may run high. They are kept in "
                f"{self.cache_file} marked as timed busy, and the next estimate on a quiet machine times them again"
            )
        return "\n".join(lines)

    def as_dict(self) -> dict[str, Any]:
        return {"machine": self.machine, "stages": {s.stage: s.seconds for s in self.stages}, "details": [asdict(s) for s in self.stages], "runs": self.runs}


def _duration(seconds: float) -> str:
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.1f} h"


# ----------------------------------------------------------------------------- per-unit costs
class Costs:
    """This machine's costs per unit for the plan's shapes (measured once, then read from the cache)."""

    def __init__(self, cache: SpeedCache, show_progress: bool = True) -> None:
        self.cache = cache
        self.bar = progress_bar(desc="timing this machine", unit="measurement", disable=not show_progress, leave=False)
        self.busy_while_timed: dict[str, float] = {}  # per measurement made here: the cores other processes kept busy just before
        self.decided: set[str] = set()  # names this estimate has timed or chosen to use as cached: asked again, read only

    def _timing(self, name: str) -> tuple[bool, float | None, bool]:
        """(whether `name` is timed now, the cores other processes keep busy, whether a value marked as timed busy is
        timed again): a value not cached yet is timed; one cached but timed busy is timed again if the machine is quiet
        now, else used as it is (and flagged). Decided once per name: an estimate asks for a unit many times."""
        if name in self.decided:
            return False, None, False
        self.decided.add(name)
        if name not in self.cache.all.get(self.cache.key, {}):
            busy = self.busy_while_timed[name] = busy_cores()
            return True, busy, busy < BUSY_CORES
        if name in self.cache.busy_marks:
            busy = busy_cores()
            if busy < BUSY_CORES:
                self.busy_while_timed[name] = busy
                return True, busy, True
            self.busy_while_timed[name] = max(busy, self.cache.busy_marks[name])
        return False, None, False

    def _get(self, name: str, measure: Any) -> float:
        time_now, busy, retime = self._timing(name)
        if time_now:
            self.bar.set_postfix_str(name.split("|")[0])
        value = self.cache.get(name, measure, busy=busy, retime=retime)
        self.bar.update(1)
        return value

    def close(self) -> None:
        self.bar.close()

    def step(self, config: RunConfig, d_model: int) -> float:
        dtype = resolve_compute_dtype(config.training.compute_dtype, config.training.device)
        t = config.training
        threads = f"|t{t.threads}" if t.threads is not None else ""  # a run that sets its threads is timed with them
        return self._get(
            f"sae_step|d{d_model}|w{config.sae.width}|b{t.batch_size}|{dtype}{threads}",
            lambda: speed.sae_step_seconds(d_model, config.sae.width, t.batch_size, dtype, t.threads),
        )

    def model(self, config: RunConfig, name: str) -> float:
        key = f"model|{config.model.name}|{config.model.dtype}|{config.model.autocast}|L{config.model.layer}|ctx{config.activations.context_length}"
        time_now, busy, retime = self._timing(f"{key}|{name}")
        if time_now:
            self.bar.set_postfix_str("language model")
            # the default model loads in seconds: time it; a large one is sized from matmuls of its shape
            measure = speed.model_speeds if config.model.name == EMBEDDED_MODEL else speed.model_speeds_from_matmuls
            measured = measure(config.model, config.activations.context_length)
            for part, value in measured.items():
                self.cache.get(f"{key}|{part}", lambda value=value: value, busy=busy, retime=retime)
        value = self.cache.get(f"{key}|{name}", lambda: math.nan)
        self.bar.update(1)
        return value

    def synthetic(self, config: RunConfig) -> tuple[float, float]:
        """The synthetic model's (dictionary seconds, seconds per generated sample)."""
        synthetic = config.model.synthetic
        key = f"synthetic|{synthetic.model_dump_json()}"
        dictionary = self._get(f"{key}|dictionary", lambda: speed.synthetic_dictionary_seconds(synthetic))
        return dictionary, self._get(f"{key}|per_sample", lambda: speed.synthetic_seconds_per_sample(synthetic))

    def measured(self, name: str, measure: Any) -> float:
        """This machine's value of `name` (seconds of something), measured once by `measure`, then cached."""
        return self._get(name, measure)

    def latent_contexts(self, config: RunConfig, d_model: int) -> float:
        """A run's latent context store (notebook 06): one store checkpoint per evaluated checkpoint."""
        a, t, e = config.activations, config.training, config.evaluation
        per_checkpoint = self._get(
            f"latent_contexts|d{d_model}|w{config.sae.width}|n{a.heldout_tokens}|ctx{a.context_length}",
            lambda: speed.latent_contexts_seconds(d_model, config.sae.width, a.heldout_tokens, a.context_length - 1),
        )
        return per_checkpoint * (len(training_checkpoint_steps(t)) if e.checkpoints == "all" else 1)  # the evaluated ones

    def notebook(self) -> float:
        return self._get("notebook", speed.notebook_seconds)

    def figures(self) -> float:
        return self._get("figures", speed.figures_seconds)


# ----------------------------------------------------------------------------- the stages
def _run_seconds(config: RunConfig, costs: Costs, d_model: int, outputs_root: Path | None = None) -> tuple[float, float]:
    """(training, evaluation) seconds of one run's notebook: what its folder in `outputs_root` (if given) still lacks
    (a trained run is not trained again; a family's recorded checkpoints are not evaluated again)."""
    t, e = config.training, config.evaluation
    pending = None if outputs_root is None else checkpoints_to_evaluate(outputs_root / config.run_name, config)
    training = t.total_steps() * costs.step(config, d_model) if pending is None else 0.0
    checkpoints = len(training_checkpoint_steps(t)) if e.checkpoints == "all" else 1
    evaluation = 0.0
    for family in evaluated(config):
        count = checkpoints if pending is None else pending[family.name]
        evaluation += family.run_seconds(costs, config, d_model, count) if count else 0.0
    return training, evaluation


def _accepted_targets(outputs_root: Path, sweep: Sweep, arm: SweepArm) -> dict[float, float]:
    """The L0 targets this arm's saved calibration has accepted a λ for, under its current configuration: target → λ
    (their probes are done, and calibrating again accepts the same λ from them)."""
    path = outputs_root / SWEEPS_FOLDER / "calibration" / f"{arm.name}.json"
    if not path.is_file():
        return {}
    saved = atomic.read_json(path)
    if saved.get("version") != CALIBRATION_VERSION or saved.get("key") != calibration_key(arm, sweep.calibration_seed):
        return {}
    # a probe accepted under other settings (e.g. before the edge targets were bracketed) is accepted only if it still is
    return {
        float(result["l0_target"]): float(result["l1_coefficient"])
        for result in saved.get("targets", [])
        if target_window(float(result["l0_target"]), sweep.l0_targets, sweep.calibration).holds(float(result["l0"]))
    }


def estimate_study(
    runs: Sequence[tuple[Path, RunConfig]],
    outputs_root: Path,
    sweep: Sweep | None = None,
    cache: SpeedCache | None = None,
    show_progress: bool = True,
    ground_truth: tuple[Path, Path] | None = None,
) -> StudyEstimate:
    """The wall time of each stage of a study of `runs` (a sweep's arms with `sweep`) on this machine; with
    `ground_truth` (the parameters folder, the track's folder) the ground-truth track's too."""
    outputs_root = Path(outputs_root)
    cache = cache or SpeedCache()
    costs = Costs(cache, show_progress)
    try:
        estimate = _estimate(runs, outputs_root, sweep, costs)
        if ground_truth is not None:
            estimate.stages.insert(0, ground_truth_stage(*ground_truth, costs))
        return estimate
    finally:
        costs.close()


def ground_truth_stage(parameters: Path, root: Path, costs: Costs) -> StageEstimate:
    """The ground-truth track's pending runs and probes on its workers, then its report (one notebook's figures)."""
    from taulib.groundtruth import cost as track_cost
    from taulib.groundtruth.report import REPORT_FILE
    from taulib.groundtruth.track import PLAIN, TRACK_FILE, check_track_folder, load_track_config, track_arms, track_record

    config = load_track_config(Path(parameters) / TRACK_FILE)
    arms, identities = track_arms(Path(parameters), config)
    check_track_folder(Path(root), track_record(config, arms, identities))  # another design's runs are refused, not priced as done
    work = track_cost.pending_work(config, arms, Path(root))
    if work.runs == 0 and (Path(root) / REPORT_FILE).is_file():
        return StageEstimate("ground-truth track", costs.figures(), "finished before: its report and figures written again")
    plain = next(arm for arm in arms if arm.name == PLAIN)
    key = track_cost.design_key(config)
    small, full = track_cost.timing_budgets(config)
    at_small = costs.measured(f"gt_run|{key}|b{small}", lambda: track_cost.time_run(config, plain, small, with_proxies=False))
    at_full = costs.measured(f"gt_run|{key}|b{full}", lambda: track_cost.time_run(config, plain, full, with_proxies=False))
    proxies = costs.measured(f"gt_run_proxies|{key}|b{full}", lambda: track_cost.time_run(config, plain, full, with_proxies=True)) - at_full
    replicate = costs.measured(f"gt_replicate|{key}|b{full}", lambda: track_cost.time_replicate(config))
    # every worker draws each replicate it trains (its one-replicate cache), so drawing costs the replicates' time in wall clock
    workers = min(config.workers, os.cpu_count() or 1)  # one-thread workers: no more at once than there are cores
    seconds = track_cost.run_seconds(work, (small, at_small), (full, at_full), proxies) / workers + work.replicates * replicate + costs.figures()
    return StageEstimate("ground-truth track", seconds, f"{work.grid_runs} runs and about {work.probes} calibration probes on {workers} one-thread workers")


def _estimate(runs: Sequence[tuple[Path, RunConfig]], outputs_root: Path, sweep: Sweep | None, costs: Costs) -> StudyEstimate:
    extraction = costs.notebook()
    extracted_tokens, inputs_seconds, loaded_models = 0, 0.0, set()
    seen_caches: set[Path] = set()
    seen_inputs: set[Path] = set()
    preparing: set[str] = set()  # the families whose inputs are still to be prepared
    for _, config in runs:
        footprint = model_footprint(config.model)
        layer = resolve_layer(config.model, footprint.n_layers)
        ctx = config.activations.context_length
        generating = False
        for split in SPLITS:
            spec = activation_spec(config, split, layer)
            folder = cache_folder(outputs_root, spec)
            if folder in seen_caches or is_complete(folder, spec):
                continue
            seen_caches.add(folder)
            if config.model.synthetic is not None:  # generated, not read through a model
                dictionary, per_sample = costs.synthetic(config)
                extracted_tokens += spec.n_tokens
                extraction += (0.0 if generating else dictionary) + spec.n_tokens * per_sample
                generating = True
                continue
            tokens = spec.n_tokens * ctx / (ctx - 1)  # BOS is read, not kept
            extracted_tokens += int(tokens)
            extraction += tokens * costs.model(config, "truncated_per_token")
            loaded_models.add(config.model.model_dump_json())
        folder = evaluation_data_folder(outputs_root, config, layer)
        if folder not in seen_inputs and not evaluation_data_complete(folder, config):
            seen_inputs.add(folder)
            inputs_seconds += sum(family.prepare_seconds(costs, config) for family in evaluated(config))
            preparing |= {family.name for family in evaluated(config) if family.prepared_files(config)}
            loaded_models.add(config.model.model_dump_json())
    extraction += sum(costs.model(config, "load") for config in {config.model.model_dump_json(): config for _, config in runs if config.model.model_dump_json() in loaded_models}.values())
    stages = [
        StageEstimate("extraction", extraction, f"{extracted_tokens:,} tokens to extract" if extracted_tokens else "caches already extracted"),
        StageEstimate("evaluation inputs", inputs_seconds, f"the inputs of {', '.join(sorted(preparing))}" if seen_inputs else "already prepared"),
    ]

    per_run: dict[str, float] = {}
    if sweep is None:
        training = evaluation = notebooks = 0.0
        for _, config in runs:
            d_model = model_footprint(config.model).d_model
            train, evaluate = _run_seconds(config, costs, d_model, outputs_root)
            per_run[config.run_name] = costs.notebook() + train + evaluate
            training, evaluation, notebooks = training + train, evaluation + evaluate, notebooks + costs.notebook()
        stages.append(StageEstimate("calibration", 0.0, "no sweep"))
        stages.append(StageEstimate("runs", sum(per_run.values()), f"{len(runs)} runs: training {_duration(training)}, evaluation {_duration(evaluation)}, notebooks {_duration(notebooks)}"))
    else:
        probe_seconds = runs_seconds = training = evaluation = 0.0
        targets, seeds = len(sweep.l0_targets), len(sweep.seeds)
        accepted = {arm.name: _accepted_targets(outputs_root, sweep, arm) for arm in sweep.calibrated_arms()}
        probes = 0.0
        for arm in sweep.arms:
            config, d_model = arm.config, model_footprint(arm.config.model).d_model
            train, evaluate = _run_seconds(config, costs, d_model)
            if (reference := sweep.identities.get(arm.name)) is not None:  # one run, trained in its notebook, no calibration (taulib.sweep.spec)
                if (chosen := accepted[reference].get(sweep.identity_target)) is not None:  # its λ is known: its run may be done
                    identity = run_config(arm, identity_l1_coefficient(arm, chosen), sweep.calibration_seed, sweep.identity_target, identity_of=reference)
                    train, evaluate = _run_seconds(identity, costs, d_model, outputs_root)
                runs_seconds += costs.notebook() + evaluate + train
                training, evaluation = training + train, evaluation + evaluate
                continue
            for target in sweep.l0_targets:
                # priced at this target: a family's cost may depend on the run's L0 (the support refit's does)
                train, evaluate = _run_seconds(run_config(arm, config.training.l1_coefficient, sweep.calibration_seed, target), costs, d_model)
                if (chosen := accepted[arm.name].get(target)) is not None:  # calibrated: its runs are known and may be done
                    for seed in sweep.seeds:
                        run_train, run_evaluate = _run_seconds(run_config(arm, chosen, seed, target), costs, d_model, outputs_root)
                        runs_seconds += costs.notebook() + run_train + run_evaluate
                        training, evaluation = training + run_train, evaluation + run_evaluate
                    continue
                probes += EXPECTED_PROBES_PER_TARGET
                probe_seconds += EXPECTED_PROBES_PER_TARGET * (train + BY_NAME["core"].checkpoint_seconds(costs, config, d_model))  # trained, then its final L0 on held-out tokens
                # the seed-0 run of a target is its accepted probe: its notebook only evaluates
                runs_seconds += seeds * (costs.notebook() + evaluate) + (seeds - 1) * train
                training += (seeds - 1) * train
                evaluation += seeds * evaluate
        calibrated = len(sweep.calibrated_arms())
        stages.append(StageEstimate("calibration", probe_seconds, f"about {probes:.0f} probes (at most {calibrated * targets * sweep.calibration.max_probes_per_target})"))
        stages.append(StageEstimate("runs", runs_seconds, f"{sweep.n_runs()} runs: training {_duration(training)}, evaluation {_duration(evaluation)}"))
    analyses = ANALYSIS_NOTEBOOKS + (1 if sweep is not None else 0)
    # notebook 06 builds a context store for one run per arm (every run outside a sweep)
    sliced = [config for _, config in runs] if sweep is None else [arm.config for arm in sweep.arms]
    stores = sum(costs.latent_contexts(config, model_footprint(config.model).d_model) for config in sliced)
    stages.append(
        StageEstimate("analysis", analyses * (costs.notebook() + costs.figures()) + stores, f"{analyses} notebooks and their figures; latent context stores {_duration(stores)}")
    )
    return StudyEstimate(stages, per_run, costs.cache.key, list(costs.cache.measured), costs.busy_while_timed, os.cpu_count() or 1, str(costs.cache.path))
