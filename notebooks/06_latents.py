# ---
# jupyter:
#   jupytext:
#     formats: ipynb,py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
#       format_version: '1.3'
#       jupytext_version: 1.19.6
#   kernelspec:
#     display_name: Python 3 (ipykernel)
#     language: python
#     name: python3
# ---

# %% [markdown]
# # 06 · Latents over training
#
# When does a feature form, and what does it fire on before it has? For every run (one per arm), each
# latent of the final SAE is followed back through training by its matched decoder direction (the
# matching `03` measures formation with) and, at every checkpoint, the held-out tokens it fires on
# most are kept with their context, with its activation histogram and firing density
# (`taulib.analysis.latent_contexts`; built once per run under `outputs/<run>/latent_contexts/`).
#
# * a browser: pick a run and a latent (by index, or from the earliest / latest formed, the most
#   active, and, in a sweep, those every seed of the arm also learned), slide over checkpoints;
# * static pages for a sample of latents per run in `outputs/figures/06_latents*.html`, readable
#   without a kernel.

# %% tags=["parameters"]
outputs_dir = "../outputs"
figures_dir = None  # default: <outputs_dir>/figures
l0_target = None  # a sweep's runs at this final-L0 target (default: the middle one)
seed = None  # … and this seed (default: the first)
save_png = True
slider_arm = None  # default: the first run with a store
top_k = 10  # top-activating held-out contexts kept per latent and checkpoint
pages_per_list = 2  # static pages per run: this many of the earliest formed, the latest formed and the most active

# %%
from pathlib import Path

from taulib.analysis.latent_contexts import ContextSettings, study_contexts
from taulib.analysis.study_data import load_study
from taulib.plots.latent_contexts import latent_figure, latent_page, pages_index
from taulib.plots.save import save_figures, save_pages
from taulib.plots.widgets import LatentBrowser

full = load_study(outputs_dir)
study = full.slice(l0_target, seed)  # one run per arm
figures_dir = Path(figures_dir) if figures_dir else Path(outputs_dir) / "figures"
settings = ContextSettings(top_k=top_k)
stores, seed_lists, skipped = study_contexts(study, outputs_dir, settings, full=full)
print(study.slice_label or "one run per arm", "·", "runs with a store:", ", ".join(stores) or "none")
for name, reason in skipped.items():
    print(f"{name}: no store ({reason})")

# %% [markdown]
# ## The browser
# Top: the shown latent's histogram of positive activations on held-out tokens at this checkpoint
# (log bins; its firing density in the title) and its decoder cosine to the final latent at every
# checkpoint (the ring: this checkpoint; dashed: where it formed, cos ≥ 0.9 from there to the end).
# Below: its top-activating contexts, every token shaded by the latent's activation there and the
# top token outlined. "same index" shows the latent in the same slot instead of the matched one.

# %%
browser = LatentBrowser(study, stores, seed_lists, arm=slider_arm)
browser.widget

# %% [markdown]
# ## Static pages
# For a sample of latents per run, every checkpoint's figure and contexts on one page.

# %%
pages, links, figures = {}, {}, {}
for name, store in stores.items():
    lists = store.latent_lists(pages_per_list)
    chosen = dict.fromkeys(latent for latents in lists.values() for latent in latents)  # in order, once
    links[name] = []
    for latent in chosen:
        page = f"06_latent_{name}_{latent}"
        pages[page] = latent_page(store, latent, plotlyjs="directory")
        labels = [label for label, latents in lists.items() if latent in latents]
        links[name].append((f"latent {latent} ({', '.join(labels)}; formed at step {int(store.formation_step[latent]):,})", f"{page}.html"))
    first = next(iter(lists["earliest formed"]), 0)
    figures[f"06_latent_{name}_{first}_at_formation"] = latent_figure(store, first, int(store.formation_step[first]))
pages["06_latents"] = pages_index(links)
written = save_pages(pages, figures_dir) + save_figures(figures, figures_dir, png=save_png)
print(f"{len(written)} files written to {figures_dir}; start at {figures_dir / '06_latents.html'}")
