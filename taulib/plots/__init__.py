"""Plotly figures of a study (from taulib.analysis tables), the checkpoint sliders, and saving as HTML and PNG."""
