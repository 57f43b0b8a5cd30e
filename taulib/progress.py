"""Progress bars: widgets in JupyterLab, plain periodic lines when a notebook runs headless."""

from __future__ import annotations

import os
from typing import Any

PLAIN_ENV = "TAULIB_PROGRESS"  # "plain": text lines to stderr (papermill streams them to the terminal)


def progress_bar(*args: Any, **kwargs: Any) -> Any:
    if os.environ.get(PLAIN_ENV) == "plain":
        from tqdm.std import tqdm

        kwargs.setdefault("mininterval", 20.0)
        kwargs.setdefault("ascii", True)
        return tqdm(*args, **kwargs)
    from tqdm.auto import tqdm

    return tqdm(*args, **kwargs)
