"""The versions of the code that produces each kind of artefact, the one place they are declared.

A cache or a run is keyed by its settings *and* by the version of the code that made it, so that a change to
that code's numbers cannot silently reuse what the old code made. Bump a version when a change moves the
numbers its stage produces (a refactor that moves none leaves it alone, and so retrains nothing):

- EXTRACTION_VERSION: the activations a cache holds (corpus sampling, the model's forward, storage);
  taulib.activations.cache keys its folders by it.
- TRAINING_VERSION: the SAE a run trains (the step, the schedule, the batch order, the initialisation);
  RunConfig.fingerprint includes it, and every run records it (config.json).
- EVALUATION_VERSION: what taulib.metrics.evaluate measures on a checkpoint, every family at once; its records
  are keyed by it and every evaluation records it (evaluation.json), and the report refuses to mix evaluations
  of two versions. A change to one metric family bumps that family's own `version` instead (its declaration,
  taulib/metrics/<family>/settings.py): its records alone are made again.

tests/test_code_versions.py holds the numbers a tiny training run and a tiny evaluation produce at the current
versions: a change that moves them fails there until the version is bumped and the numbers re-recorded.

Version 1 of extraction and training leaves the keys as they were before versions were recorded (`versioned`),
so caches and runs made before this module existed stay valid.
"""

from __future__ import annotations

from typing import Any

EXTRACTION_VERSION = 1
TRAINING_VERSION = 1
EVALUATION_VERSION = 3  # 1 → 2 → 3: probing and the spliced CE/KL changed before this module existed


def versioned(payload: dict[str, Any], name: str, version: int) -> dict[str, Any]:
    """`payload` with `name: version` added to what is hashed, except version 1: a key made before the version
    was recorded is the key of version 1."""
    return payload if version == 1 else payload | {name: version}
