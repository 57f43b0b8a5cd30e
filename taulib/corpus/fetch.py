"""Fetch the corpus's Debian packages with apt-get and unpack them (no system-wide install)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path
from urllib.parse import unquote

from taulib.corpus.sources import debian_packages


def fetch_debian_packages(data_dir: Path, packages: list[str] | None = None) -> list[str]:
    """Download and unpack every missing package into data_dir/debian/<package>; return those fetched."""
    packages = packages or debian_packages()
    target = data_dir / "debian"
    missing = [package for package in packages if not (target / package).is_dir()]
    if not missing:
        return []
    for tool in ("apt-get", "dpkg-deb"):
        if shutil.which(tool) is None:
            raise RuntimeError(f"{tool} not found: the corpus's Debian packages need a Debian-based system")
    archives = target / "archives"
    archives.mkdir(parents=True, exist_ok=True)
    if os.geteuid() == 0:  # apt's package lists may be empty on a fresh machine
        subprocess.run(["apt-get", "update", "-qq"], check=True)
    # as root, apt would hand the download to its unprivileged _apt user, who cannot write here
    sandbox = ["-o", "APT::Sandbox::User=root"] if os.geteuid() == 0 else []
    subprocess.run(["apt-get", "download", "-q", *sandbox, *missing], cwd=archives, check=True)
    for package in missing:
        debs = sorted(archives.glob(f"{package}_*.deb"))
        if not debs:
            raise RuntimeError(f"apt-get download produced no .deb for {package}")
        partial = target / f".{package}.partial"
        shutil.rmtree(partial, ignore_errors=True)
        subprocess.run(["dpkg-deb", "-x", str(debs[-1]), str(partial)], check=True)
        (partial / ".deb-version").write_text(unquote(debs[-1].name.split("_")[1]) + "\n")
        partial.rename(target / package)  # a folder appears only once it is whole
        debs[-1].unlink()
    return missing


if __name__ == "__main__":
    from taulib.corpus.build import default_data_dir

    fetched = fetch_debian_packages(Path(sys.argv[1]) if len(sys.argv) > 1 else default_data_dir())
    print(f"fetched {len(fetched)} Debian packages" if fetched else "corpus packages already present")
