"""Probing tasks: the fetched data loads into the expected classes, with enough clean, distinct, correctly labelled examples."""

from __future__ import annotations

import ast
import textwrap
from collections import Counter
from pathlib import Path

import pytest

from taulib.corpus.probing_tasks import (
    DEFAULT_TASKS,
    PROBING_TASKS,
    _chunks,
    _deduplicate,
    _in_language,
    balanced_examples,
    fetch_probing_data,
    load_task,
    shares_training_text,
    training_paragraphs,
)

CLASSES = {
    "bbc_topic": {"business", "entertainment", "politics", "sports", "tech"},
    "sentiment": {"positive", "negative"},
    "natural_language": {"en", "de", "fr", "es", "it", "pt", "ja", "zh-cn"},
    "code_language": {"python", "c", "cpp", "java", "javascript", "go", "rust", "ruby", "perl", "php", "shell", "lua"},
    "uncertainty": {"certain", "uncertain"},
}
MIN_PER_CLASS = 300  # what a balanced train + test draw needs, with margin


@pytest.fixture(scope="module")
def fetched() -> None:
    fetch_probing_data()  # downloads ~50 MB on the first run, then returns at once


def _texts(task: str, label: str) -> list[str]:
    return [text for text, text_label in load_task(task) if text_label == label]


def test_registry_is_consistent() -> None:
    assert set(PROBING_TASKS) == set(CLASSES)
    assert set(DEFAULT_TASKS) <= set(PROBING_TASKS)
    for name, task in PROBING_TASKS.items():
        assert task.name == name and task.description and "\n" not in task.description and task.licence
        assert task.registry in ("debian", "pypi", "debian+pypi") and task.packages
    assert PROBING_TASKS["code_language"].registry == "debian+pypi"
    assert "JPype1" in PROBING_TASKS["code_language"].packages


@pytest.mark.parametrize("task", sorted(CLASSES))
def test_classes_counts_and_cleanliness(fetched: None, task: str) -> None:
    examples = load_task(task)
    counts = Counter(label for _, label in examples)
    assert set(counts) == CLASSES[task]
    assert PROBING_TASKS[task].n_classes == len(counts)  # what the plan check counts before reading any text
    assert min(counts.values()) >= MIN_PER_CLASS, counts
    texts = [text for text, _ in examples]
    assert len(set(texts)) == len(texts)
    assert all(any(ch.isalnum() for ch in text) and text == text.rstrip() for text in texts)
    if task != "code_language":  # code keeps its indentation
        assert all(text == text.strip() and "  " not in text for text in texts)
    assert load_task(task) == examples  # same order every time


def test_sentiment_labels_known_sentences(fetched: None) -> None:
    labels = dict(load_task("sentiment"))
    assert labels["simplistic , silly and tedious ."] == "negative"
    positive = [text for text in labels if text.startswith("the rock is destined to be the 21st century's new")]
    assert len(positive) == 1 and labels[positive[0]] == "positive"
    assert Counter(labels.values()) == {"positive": 2000, "negative": 2000}


def test_uncertainty_labels_hedges_and_unescapes_entities(fetched: None) -> None:
    labels = dict(load_task("uncertainty"))
    assert labels["Prelingual deafness"] == "certain"
    assert labels["In children, this type of hearing loss can lead to social isolation for several reasons."] == "uncertain"
    assert not any("&quot;" in text for text in labels)


def test_bbc_articles_start_with_their_title(fetched: None) -> None:
    business = _texts("bbc_topic", "business")
    assert business[0].startswith("Ad sales boost Time Warner profit. Quarterly profits at US media giant TimeWarner")
    assert all("\n" not in text for text in business)
    assert sum("football" in text.lower() for text in _texts("bbc_topic", "sports")) > 5 * sum("football" in text.lower() for text in business)


FUNCTION_WORDS = {  # not the loader's own lists, so that this checks the labels rather than restating the filter
    "en": set("the and is of to that with for you this are can be or not".split()),
    "de": set("und ist der die das nicht sie wird auf mit für oder im des dem sich können".split()),
    "fr": set("et est le la les des une pour dans vous sur qui ne avec ou peut".split()),
}


def _count(text: str, language: str) -> int:
    return sum(word in FUNCTION_WORDS[language] for word in text.lower().replace(",", " ").replace(".", " ").split())


def test_natural_languages_look_like_their_label(fetched: None) -> None:
    for language in FUNCTION_WORDS:
        paragraphs = _texts("natural_language", language)
        others = [other for other in FUNCTION_WORDS if other != language]
        own_wins = sum(all(_count(text, language) > _count(text, other) for other in others) for text in paragraphs)
        assert own_wins > 0.95 * len(paragraphs), language
    kana = lambda text: any("\u3040" <= ch <= "\u30ff" for ch in text)  # noqa: E731
    assert sum(map(kana, _texts("natural_language", "ja"))) > 0.95 * len(_texts("natural_language", "ja"))
    assert sum(map(kana, _texts("natural_language", "zh-cn"))) < 0.05 * len(_texts("natural_language", "zh-cn"))


def _parses_as_python(chunk: str) -> bool:
    try:
        ast.parse(textwrap.dedent(chunk))
    except SyntaxError:
        return False
    return True


def _parse_rate(chunks: list[str]) -> float:
    return sum(map(_parses_as_python, chunks)) / len(chunks)


def test_code_chunks_carry_their_language(fetched: None) -> None:
    python, c = _texts("code_language", "python"), _texts("code_language", "c")
    # 8-line fragments often cut a block in two, so only a minority parse, but far more than other languages' do
    python_rate = _parse_rate(python)
    other_rate = max(_parse_rate(_texts("code_language", language)) for language in ("c", "go", "rust", "ruby", "lua"))
    assert python_rate > 0.2 and python_rate > 5 * other_rate
    assert sum(";" in chunk for chunk in c) / len(c) > 0.9 > 0.2 > sum(";" in chunk for chunk in python) / len(python)
    assert sum("def " in chunk or "self" in chunk for chunk in python) / len(python) > 0.5 > 0.1 > sum("def " in chunk for chunk in c) / len(c)
    assert all(chunk.count("\n") < 8 and len(chunk) <= 500 for chunk, _ in load_task("code_language"))
    assert not any("copyright" in chunk.lower() for chunk, _ in load_task("code_language"))


@pytest.mark.parametrize("task", DEFAULT_TASKS)
def test_balanced_examples_are_balanced_and_deterministic(fetched: None, task: str) -> None:
    sample = balanced_examples(task, per_class=50, seed=3)
    assert Counter(label for _, label in sample) == {label: 50 for label in CLASSES[task]}
    assert len({text for text, _ in sample}) == len(sample)
    assert balanced_examples(task, per_class=50, seed=3) == sample
    assert balanced_examples(task, per_class=50, seed=4) != sample
    all_examples = set(load_task(task))
    assert all(example in all_examples for example in sample)


def test_no_probing_text_is_training_text(fetched: None) -> None:
    """The English Debian Reference is a probing class and a corpus source: about a third of its
    paragraphs are in the training split. The draws leave every such text out."""
    training = training_paragraphs()
    english = [text for text, label in load_task("natural_language") if label == "en"]
    shared = [text for text in english if shares_training_text(text, training)]
    assert len(shared) > 100  # the check has something to catch
    for task in DEFAULT_TASKS:
        assert not any(shares_training_text(text, training) for text, _ in balanced_examples(task, per_class=100, seed=42))
    # the check itself: a text is caught by any one of its paragraphs, whitespace aside
    assert shares_training_text("An unrelated first line that is long enough.\n  " + "  ".join(shared[0].split()) + " ", training)


def test_balanced_examples_name_the_short_class(fetched: None) -> None:
    with pytest.raises(ValueError, match=r"2001 examples per class.*class 'negative' has 2000"):
        balanced_examples("sentiment", per_class=2001, seed=0)


def test_unknown_task_lists_the_valid_ones() -> None:
    with pytest.raises(ValueError, match=r"unknown probing task 'sentimant'.*sentiment.*code_language"):
        load_task("sentimant")
    with pytest.raises(ValueError, match="unknown probing task"):
        balanced_examples("nope", per_class=1, seed=0)


@pytest.mark.parametrize("task", ["sentiment", "natural_language", "code_language", "uncertainty"])
def test_missing_data_names_task_path_and_command(tmp_path: Path, task: str) -> None:
    with pytest.raises(FileNotFoundError, match=rf"probing task '{task}': missing {tmp_path}/.*python -m taulib corpus"):
        load_task(task, data_dir=tmp_path)


def test_language_filter_drops_untranslated_paragraphs() -> None:
    assert _in_language("Dieser Abschnitt beschreibt, wie man das System mit dem Paketmanager aktualisiert und die Konfiguration prüft.", "de")
    assert not _in_language("This section describes how to upgrade the system with the package manager and check the configuration.", "de")
    assert _in_language("このコマンドはシステムを更新します。", "ja") and not _in_language("Use apt-get update to refresh the package lists.", "ja")


def test_chunks_skip_comment_blocks_and_licences() -> None:
    code = [f"x{i} = compute_value(argument_{i}) + offset" for i in range(8)]
    comments = [f"# explanatory comment number {i} about the code" for i in range(8)]
    licence = ["# Copyright 2020 someone", *code[:7]]
    assert _chunks(code + comments + licence) == ["\n".join(code)]


def test_deduplicate_keeps_first_and_drops_conflicting_labels() -> None:
    examples = [("a", "x"), ("b", "y"), ("a", "x"), ("c", "x"), ("c", "y"), ("", "x"), ('"', "x")]
    assert _deduplicate(examples) == [("a", "x"), ("b", "y")]
