"""Command line: `python -m taulib study` runs the whole study; `python -m taulib corpus` builds the corpus."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import yaml

from taulib.config import ConfigError


def _parse_overrides(pairs: list[str]) -> dict[str, Any]:
    """`--set training.n_tokens=100000` → {"training": {"n_tokens": 100000}} (values parsed as YAML)."""
    from taulib.config import _Yaml12FloatLoader

    overrides: dict[str, Any] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise ConfigError(f"--set {pair!r}: expected KEY=VALUE, e.g. training.n_tokens=100000")
        node = overrides
        *parents, leaf = key.split(".")
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = yaml.load(value, Loader=_Yaml12FloatLoader)
    return overrides


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="taulib", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    study = commands.add_parser("study", help="extract activations once, then train every parameter file (papermill)")
    study.add_argument("--parameters", type=Path, default=Path("parameters"), help="folder of parameter files")
    study.add_argument("--outputs", type=Path, default=Path("outputs"), help="outputs folder")
    study.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE", help="override a parameter in every run")
    corpus = commands.add_parser("corpus", help="fetch the corpus packages and build the corpus")
    corpus.add_argument("--data", type=Path, default=None, help="data folder (default: TAULIB_DATA_DIR or ./data)")
    args = parser.parse_args(argv)

    if args.command == "corpus":
        from taulib.corpus.build import build_corpus, default_data_dir
        from taulib.corpus.fetch import fetch_debian_packages

        data_dir = args.data or default_data_dir()
        fetch_debian_packages(data_dir)
        manifest = build_corpus(data_dir)
        documents = sum(r["train_documents"] + r["heldout_documents"] for r in manifest["sources"])
        print(f"corpus ready: {len(manifest['sources'])} sources, {documents} documents, in {data_dir / 'corpus'}")
        return 0

    from taulib.study import StudyInputError, format_summary, run_study
    from taulib.trainer import RunMismatchError

    try:
        records = run_study(args.parameters, args.outputs, _parse_overrides(args.overrides))
    except (ConfigError, StudyInputError, RunMismatchError) as error:
        print(f"taulib: refused before any work started:\n{error}", file=sys.stderr)
        return 2
    print(format_summary(records))
    failed = [record for record in records if record.status != "ok"]
    if failed:
        print(f"taulib: {len(failed)} of {len(records)} runs failed", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
