"""Text sources: each one real, seeded, cut to the asked number of tokens."""

import json

import pytest

from cramming import CrammingError
from cramming.model.texts import Sample, load_samples


def ntok(tokenizer, text):
    return len(tokenizer(text, add_special_tokens=False)["input_ids"])


@pytest.fixture
def tok(tiny_lm):
    return tiny_lm.tokenizer


def test_file_sources(tok, tmp_path):
    doc = "First sentence here. Second one is longer than that. Third ends it all."
    (tmp_path / "a.txt").write_text(doc)
    (tmp_path / "a.jsonl").write_text("\n".join(json.dumps({"text": t}) for t in ["one doc", "two docs"]) + "\n")
    (tmp_path / "a.csv").write_text('id,text\n1,"hello, world"\n2,second row\n')
    whole = load_samples(f"file:{tmp_path / 'a.jsonl'}", 5, None, tok)
    assert [s.text for s in whole] == ["one doc", "two docs"]
    assert [s.text for s in load_samples(f"file:{tmp_path / 'a.csv'}", 2, None, tok)] == ["hello, world", "second row"]
    cut = load_samples(f"file:{tmp_path / 'a.txt'}", 3, 5, tok, seed=1)
    assert len(cut) == 3 and all(ntok(tok, s.text) == 5 for s in cut)
    tails = [doc[doc.index(w):] for w in ("First", "Second", "Third")]
    # passages start at a sentence, and no two share text: three sentences give three passages, not a fourth
    assert sorted(next(i for i, t in enumerate(tails) if t.startswith(s.text)) for s in cut) == [0, 1, 2]
    with pytest.raises(CrammingError, match="too few passages"):
        load_samples(f"file:{tmp_path / 'a.txt'}", 4, 5, tok, seed=1)


def test_passages_share_text_only_where_their_characters_meet():
    a = Sample("books", 0, "abcdef", 3, (2, 10))  # characters 10-15 of document 2
    assert a.shares_text(Sample("books", 1, "xyz", 1, (2, 15))) and a.shares_text(Sample("books", 1, "x", 1, (2, 10)))
    assert not a.shares_text(Sample("books", 1, "xyz", 1, (2, 16)))  # adjacent: nothing in common
    assert not a.shares_text(Sample("books", 1, "xyz", 1, (3, 12)))  # another document
    assert not a.shares_text(Sample("recent", 1, "xyz", 1, (2, 12)))  # another source
    assert not a.shares_text(Sample("random", 1, "xyz", 1))  # generated text is nowhere


def test_file_source_errors(tok, tmp_path):
    (tmp_path / "bad.jsonl").write_text('{"no_text": 1}\n')
    (tmp_path / "bad.csv").write_text("a,b\n1,2\n")
    for spec, pattern in [("file:" + str(tmp_path / "nope.txt"), "no such file"),
                          ("file:" + str(tmp_path / "bad.jsonl"), "'text' field"),
                          ("file:" + str(tmp_path / "bad.csv"), "'text' column"),
                          ("gutenberg", "unknown text source")]:
        with pytest.raises(CrammingError, match=pattern):
            load_samples(spec, 1, 8, tok)


@pytest.mark.parametrize("source", [pytest.param("books", marks=pytest.mark.pypi),
                                    pytest.param("alice", marks=pytest.mark.pypi),
                                    pytest.param("recent", marks=pytest.mark.pypi), "random"])
def test_named_sources_are_seeded_and_cut(tok, source):
    a = load_samples(source, 3, 24, tok, seed=0)
    assert [s.text for s in a] == [s.text for s in load_samples(source, 3, 24, tok, seed=0)]
    assert [s.text for s in a] != [s.text for s in load_samples(source, 3, 24, tok, seed=1)]
    assert len({s.text for s in a}) == 3
    assert all(ntok(tok, s.text) == 24 for s in a)


def test_random_text_is_words_joined_by_spaces(tok):
    [s] = load_samples("random", 1, 40, tok)
    words = s.text.split(" ")
    assert len(words) >= 4 and all(w.isalpha() for w in words)


def test_prose_text_keeps_the_prose_of_a_plain_text_book():
    from cramming.model.texts import prose_text

    book = ("\r\n\r\n                CHAPTER I\r\n\r\n  It was a dark\r\nnight.  `Oh dear!' said\r\nAlice, a queer-\r\n"
            "shaped girl--\r\nor not.\r\n\r\n"
            "        `Twinkle, twinkle,\r\n          little bat!'\r\n\r\n     *     *     *\r\n\r\n"
            "and so it went on.\r\n")
    assert prose_text(book) == ("It was a dark night. 'Oh dear!' said Alice, a queer-shaped girl--or not. "
                                "and so it went on.")


@pytest.mark.pypi
def test_alice_is_the_whole_book_without_headings_or_verse():
    from cramming.model.texts import alice_documents

    [doc] = alice_documents()
    assert doc.startswith("Alice was beginning to get very tired") and doc.endswith("the happy summer days.")
    assert "CHAPTER" not in doc and "How doth the little crocodile" not in doc and "`" not in doc
    assert 130_000 < len(doc) < 140_000


@pytest.mark.pypi
def test_recent_leads_mention_2025_or_2026():
    from cramming.model.texts import recent_documents

    docs = recent_documents()
    assert len(docs) > 50 and all("2025" in d or "2026" in d for d in docs)


@pytest.mark.pypi
def test_texts_command(run_cli, tiny_dir):
    code, out, err = run_cli("texts", "books", "--n", "2", "--tokens", "16", "--model", str(tiny_dir), "--json")
    assert code == 0, err
    rows = [json.loads(line) for line in out.splitlines()]
    assert len(rows) == 2 and all(r["n_tokens"] == 16 and r["source"] == "books" for r in rows)


def test_hf_source_says_what_it_needs(tok):
    """Offline, or without the datasets library, an hf: source fails with one clear message."""
    with pytest.raises(CrammingError, match="datasets library|could not load dataset"):
        load_samples("hf:pg19:test", 1, 16, tok)


def test_a_cut_inside_a_character_is_refused_and_the_next_sentence_taken(tok, tmp_path):
    from cramming.model.texts import cut

    text = "ŁÓDŹ ŻÓŁW"  # two-byte characters: the byte-level tokenizer spells each in two tokens
    ids = tok(text, add_special_tokens=False)["input_ids"]
    splits = [n for n in range(1, len(ids)) if cut(tok, ids, n) is None]
    assert splits and all(tok.decode(ids[:n]).endswith("\ufffd") or ntok(tok, tok.decode(ids[:n])) != n
                          for n in splits)
    (tmp_path / "pl.txt").write_text("Łódź. A plain sentence follows here for the cut to take.")
    [sample] = load_samples(f"file:{tmp_path / 'pl.txt'}", 1, 3, tok, seed=0)
    assert ntok(tok, sample.text) == 3 and "\ufffd" not in sample.text


@pytest.mark.real
@pytest.mark.pypi
@pytest.mark.parametrize("source", ["books", "alice", "recent", "random", "file"])
def test_every_source_cuts_passages_that_encode_back_to_their_count(source, tmp_path):
    """A property of every source, non-ASCII text included: each passage drawn, at any length, is exactly that many
    tokens when crammed (a cut inside a character once gave a 64-token row 65 tokens)."""
    from cramming import load_model

    tokenizer = load_model("smollm2-135m-instruct-q4_1").tokenizer
    if source == "file":
        line = "Zdanie {}: Łódź, Kraków i Gdańsk — «naïve café» 東京 {}€. Ещё одно предложение здесь."
        (tmp_path / "mixed.txt").write_text(" ".join(line.format(i, i * 7) for i in range(60)))
        source = f"file:{tmp_path / 'mixed.txt'}"
    for seed in range(3):
        for length in (7, 33, 64, 101):
            for sample in load_samples(source, 4, length, tokenizer, seed):
                assert ntok(tokenizer, sample.text) == length, (source, seed, length, sample.index, sample.text[-20:])


@pytest.mark.real
def test_the_long_text_sets_stay_apart_and_their_grids_are_checked():
    """The tuning and test sets share no text at the lengths they are run at; a grid names a set's passages."""
    from cramming import load_model
    from cramming.experiments.long_texts import PASSAGES, SETS, check_apart, set_spec
    from cramming.experiments.runner import recipe_tables

    check_apart([64, 96, 128], load_model("smollm2-135m-instruct-q4_1").tokenizer)
    tables = recipe_tables(["d7=default@7"], ["d7.precision=bf16"])
    assert tables == {"d7": {"base": "default@7", "precision": "bf16"}}
    spec = set_spec("test", "alice", [0, 3], 96, "d7", tables["d7"], 5000)
    assert (spec.text_seed, spec.samples, spec.lengths, spec.max_steps) == (SETS["test"], [0, 3], [96], 5000)
    with pytest.raises(CrammingError, match="passages 0-9"):
        set_spec("test", "alice", [PASSAGES], 96, "d7", tables["d7"], 5000)
    with pytest.raises(CrammingError, match="--set takes NAME.FIELD=VALUE"):
        recipe_tables([], ["x.lr=1"])
