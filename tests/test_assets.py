"""Files shipped inside PyPI packages: a file split over several packages is joined once and checked."""

import hashlib
import sys

import pytest

from cramming import CrammingError
from cramming.model.assets import PackageFile, SplitFile


@pytest.fixture
def parts(tmp_path, monkeypatch):
    """Three installed 'part packages' on sys.path, each holding one chunk -> (their PackageFiles, the whole)."""
    chunks = [b"first chunk|", b"second|", b"third and last"]
    files = []
    for i, chunk in enumerate(chunks):
        folder = tmp_path / "site" / f"fake_part{i}" / "data"
        folder.mkdir(parents=True)
        (folder.parent / "__init__.py").write_text("")
        (folder / f"file.part{i:02d}").write_bytes(chunk)
        files.append(PackageFile(f"fake-part{i}", "1.0", f"fake_part{i}", f"data/file.part{i:02d}"))
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    monkeypatch.setattr(sys, "path_importer_cache", {})
    monkeypatch.setenv("CRAMMING_CACHE", str(tmp_path / "cache"))  # a cache of its own: nothing left behind
    return files, b"".join(chunks)


def test_a_split_file_is_joined_once_and_checked(parts, tmp_path):
    files, whole = parts
    split = SplitFile("joined.bin", tuple(files), hashlib.sha256(whole).hexdigest())
    assert split.local() is None
    path = split.path()
    assert path.read_bytes() == whole and split.local() == path and path.parent == tmp_path / "cache" / "downloads"
    assert split.path() == path  # the second time: the joined file, nothing read again


def test_a_split_file_with_the_wrong_checksum_is_refused_and_not_kept(parts):
    files, _ = parts
    split = SplitFile("bad.bin", tuple(files), "0" * 64)
    with pytest.raises(CrammingError, match="does not match its sha256"):
        split.path()
    assert split.local() is None and not list(split.cached().parent.glob(".bad.bin.*"))
