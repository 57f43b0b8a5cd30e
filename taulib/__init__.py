"""taulib: a τ-annealed sparse-autoencoder study.

Every module, one concept each (tests/test_layout.py keeps this list complete; a metric family is a folder,
metrics.<family>, of its settings.py declaration, its family.py work and its metric.py computation):

config                       typed run configuration from YAML parameter files; every default and its meaning
precision                    which matmul precision a device runs fast (what `auto` means)
schedules                    τ(t) schedules: the L1 penalty is divided by τ(t)
sae                          the ReLU sparse autoencoder and its safetensors format
cli                          `python -m taulib study | groundtruth | sweep | extract | train | evaluate | keep | params | corpus`
atomic                       atomic writes of every artefact under outputs/
progress                     progress bars (widgets in JupyterLab, periodic lines headless)
provenance                   package versions, git commit and machine of a result
versions                     the versions of the code that make each artefact (extraction, training, evaluation)
strict_model                 the base of every settings model: unknown keys refused, no coercion, frozen
timing                       timing this machine: short timings of code, cached per machine under a lock
parameter_docs               every parameter the parameter, sweep and track files can set (`taulib params`, docs/parameters.md)

corpus.sources               the packaged text sources, where their text lives, their licences
corpus.cleaning              markup → prose paragraphs
corpus.build                 the corpus: documents, train/held-out split, manifest
corpus.fetch                 fetching the corpus's Debian packages (apt-get download, no install)
corpus.stream                documents → fixed-length token sequences
corpus.probing_tasks         labelled texts of the sparse-probing tasks

activations.models           loading the language model (embedded Gemma 3 270M or any transformers LM)
activations.extraction       residual-stream extraction with nnsight
activations.cache            the on-disk activation cache: spec, folder, shards, manifest, checksums
activations.synthetic        the synthetic model: a residual stream of known sparse features, its cache and dictionary

train.trainer                the annealed trainer: schedule, checkpoints, resume, training log
train.gradients              one step's loss and gradients, written out by hand
train.kernels                the step's matmul kernels (oneDNN on a CPU)
train.sparse_switch          where the step switches to its sparse side: the crossover, measured per machine

groundtruth.world            the ground-truth world: parents with mutually exclusive children, correlated, rare, clustered features
groundtruth.endpoints        one checkpoint against the truth: MCC, recovery, firing F1, splits, absorption, by feature type
groundtruth.speed            when things happen over training: restricted means of censored times, crossings, areas
groundtruth.track            the ground-truth track's design and runs: worlds × seeds, arms, families, budgets, coefficient grids
groundtruth.cost             what a track folder still lacks and what one of its runs costs on this machine (the study's estimate)
groundtruth.analysis         its verdicts: matched L0, paired contrasts, Holm per question, A/A, dose-response, proxies
groundtruth.report           its REPORT.md, summary and figures

playground.world_runs        a playground run on the ground-truth world: one schedule, trained as the track trains, every checkpoint kept
playground.sparsity          λ for a target L0: probes that are whole runs, the nearest kept
playground.controls          the schedule controls → an arm file's schedule mapping, validated by the study's rules
playground.comparison        the track's own runs at the nearest L0 beside a playground run
playground.keep              a playground schedule written as an arm file, once the folder with it passes the study's checks
playground.language_model    a short playground run on the study's cached language-model activations, and a latent's contexts
playground.ui                the playground's widgets (notebook 07)

sweep.spec                   the matched-sparsity sweep (parameters/_sweep.yaml)
sweep.calibration            calibrating λ per arm to a target L0
sweep.runs                   sweep → calibrated parameter files, one per run

metrics.declaration          what a metric family declares: its name, model needed, parameters, columns, version
metrics.catalogue            the metric families, in evaluation order: the one list of their declarations
metrics.family               what a family's class does: inputs, chunked evaluation, cost, plan needs
metrics.families             the families' classes, found by the catalogue's names
metrics.evaluate             every metric family on every checkpoint of a run, cached per family
metrics.core                 reconstruction: L0, explained variance, dead latents, density
metrics.downstream           CE loss and KL with the reconstruction spliced into the model
metrics.orthogonality        decoder max-cosine statistics against random baselines
metrics.decoder_drift        each latent's decoder cosine to its initialisation: is the dictionary learned or inherited
metrics.support_refit        explained variance with the active latents' coefficients refitted: the dictionary without L1's shrinkage
metrics.ground_truth         recovery of the synthetic model's known dictionary, per checkpoint and per feature
metrics.absorption           SAE Bench's first-letter feature absorption
metrics.probing              SAE Bench's sparse probing
metrics.probing_baseline     sparse probing of a random SAE at each checkpoint's L0: the baseline of the probing lift
metrics.logistic             batched logistic regression (the probes of absorption and probing)
metrics.latent_formation     latents matched between dictionaries by decoder direction

study.run                    running the study: validation, then notebooks executed with papermill
study.plan_check             the plan check: every run against the others and this machine, before any work
study.cost                   the wall-time estimate, stage by stage
study.machine_speed          this machine's timings of the real code, cached per machine
study.executors              in-process or Dask execution of the runs

analysis.study_data          the arms of a finished study, read from outputs/
analysis.matched             one row per run: what the report compares at matched sparsity
analysis.frontier            metrics read at exactly matched L0 off each arm's frontier
analysis.formation           time to final, formation at matched current L0, absorption speed
analysis.latent_formation    per-latent formation and seed stability of a study's runs
analysis.reference_formation  per-latent formation against the other seeds' consensus dictionary
analysis.latent_contexts     what each latent fires on at every checkpoint: top held-out contexts, histogram, density (stored per run)
analysis.orthogonality       near duplicates over training, the τ-floor ablation, τ trajectory vs outcome
analysis.checkpoint_state    one checkpoint's details as tidy tables (what a slider redraws)
analysis.intervals           intervals over seeds and paired differences
analysis.statistics          Holm correction, equivalence (TOST), permutation rank correlation
analysis.sequence_bootstrap  paired differences whose interval includes the evaluation text's sampling error
analysis.probe_bootstrap     paired differences whose interval includes the probing test set's sampling error
analysis.report              the written verdict (outputs/REPORT.md)
analysis.findings            a finished study's report kept in docs/findings, stamped, and README's findings generated from it

plots.style                  one colour and dash per arm
plots.training               metrics against tokens seen, with τ(t) and λ/τ(t)
plots.orthogonality          orthogonality figures
plots.pareto                 metric-vs-L0 curves per arm
plots.latent_formation       share of final latents formed over training
plots.latent_contexts        one latent at one checkpoint: highlighted contexts, histogram, cosine to its final self; static pages
plots.state                  one checkpoint's state, redrawn in place
plots.widgets                ipywidgets sliders that scrub checkpoints (and the latent browser)
plots.playground             the τ playground's figures: schedule curves, a run as it trains beside the arms, the dictionary at a checkpoint
plots.save                   standalone HTML and PNG under outputs/figures/

interop.export               a saved SAE as a SAELens folder or an SAE Bench custom SAE
interop.sae_bench            SAE Bench's own absorption and core code on taulib's model and data (the cross-check)

Layers: `metrics` computes a number from one SAE, `analysis` compares runs of a finished study, and
`plots` draws what `analysis` returns; a module of the same name in each is the same measure at each layer.
"""

from pathlib import Path

__version__ = "0.1.0"
# the checkout taulib is installed from in editable mode: its notebooks/, parameters/ and data/
REPOSITORY_ROOT = Path(__file__).resolve().parents[1]
