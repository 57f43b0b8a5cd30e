"""The ground-truth track: every arm trained on hierarchical worlds whose features are known, scored against them.

The study's primary evidence on formation and absorption speed (`python -m taulib groundtruth`; `make study` runs
it first). Layers, bottom up: `world` draws the data, `endpoints` scores one checkpoint against the truth, `speed`
summarises when things happen (censored times as restricted means), `track` trains and scores every run,
`analysis` compares the arms, `report` writes the verdicts.
"""
