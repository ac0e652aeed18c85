"""The corpus of bench/compare.py: large Debian wallpapers (JPEG, PNG, WebP) and Thumbor's own
portraits (for smart crops), fetched once into ``.cache/bench/corpus/<set>/``.

The wallpapers come from the distribution's packages, fetched with ``apt-get download`` and
unpacked with ``dpkg-deb -x`` as ``scripts/fetch-images`` does. Bookworm's packages hold nothing
between 3840x2160 and 5120x2880, so the PNGs are the 3840x2160 ones (plus one 5K with alpha) and
the JPEGs the 5120x2880 ones (four baseline, one progressive).
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from pathlib import Path

PACKAGES = ["plasma-workspace-wallpapers", "gnome-backgrounds"]

#: set name -> {file name in the corpus: path inside the unpacked packages}
WALLPAPERS = {
    "jpeg": {
        "flow-dark.jpg": "usr/share/wallpapers/Flow/contents/images_dark/5120x2880.jpg",
        "honeywave.jpg": "usr/share/wallpapers/Honeywave/contents/images/5120x2880.jpg",
        "shell.jpg": "usr/share/wallpapers/Shell/contents/images/5120x2880.jpg",
        "safelanding.jpg": "usr/share/wallpapers/SafeLanding/contents/images/5120x2880.jpg",
        "volna-progressive.jpg": "usr/share/wallpapers/Volna/contents/images/5120x2880.jpg",
    },
    "png": {
        "cascade.png": "usr/share/wallpapers/Cascade/contents/images/3840x2160.png",
        "opal.png": "usr/share/wallpapers/Opal/contents/images/3840x2160.png",
        "cluster.png": "usr/share/wallpapers/Cluster/contents/images/3840x2160.png",
        "kokkini.png": "usr/share/wallpapers/Kokkini/contents/images/3840x2160.png",
        "canopee.png": "usr/share/wallpapers/Canopee/contents/images/3840x2160.png",
        "patak-dark.png": "usr/share/wallpapers/Patak/contents/images_dark/3840x2160.png",
        "icecold-alpha.png": "usr/share/wallpapers/IceCold/contents/images/5120x2880.png",
    },
    "webp": {
        "adwaita-l.webp": "usr/share/backgrounds/gnome/adwaita-l.webp",
        "licorice-l.webp": "usr/share/backgrounds/gnome/licorice-l.webp",
        "wood-l.webp": "usr/share/backgrounds/gnome/wood-l.webp",
    },
}

PORTRAITS = [
    "800px-Christophe_Henner_-_June_2016.jpg",
    "800px-Guido-portrait-2014.jpg",
    "800px-Katherine_Maher.jpg",
]


class CorpusError(RuntimeError):
    pass


def _succeeds(argv: list[str], cwd: Path | None = None) -> bool:
    return subprocess.run(argv, cwd=cwd, capture_output=True).returncode == 0


def _download(packages: list[str], into: Path) -> None:
    download = ["apt-get", "download", *packages]
    # a fresh machine may have no package lists yet
    if not _succeeds(download, into) and not (_succeeds(["apt-get", "update"]) and _succeeds(download, into)):
        raise CorpusError(f"apt-get download {' '.join(packages)} failed (needs apt-get and network access)")


def _fetch_wallpapers(dest: Path, scratch: Path) -> None:
    if not (shutil.which("apt-get") and shutil.which("dpkg-deb")):
        raise CorpusError("apt-get and dpkg-deb are needed to fetch the wallpapers")
    _download(PACKAGES, scratch)
    unpacked = scratch / "x"
    for deb in sorted(scratch.glob("*.deb")):
        subprocess.run(["dpkg-deb", "-x", str(deb), str(unpacked)], check=True)
    for name, files in WALLPAPERS.items():
        (dest / name).mkdir(parents=True, exist_ok=True)
        for target, source in files.items():
            if (unpacked / source).exists():  # another package version may lack one: skip it
                shutil.copyfile(unpacked / source, dest / name / target)


def _copy_portraits(dest: Path) -> None:
    import thumbor

    fixtures = Path(thumbor.__file__).parent / "fixtures" / "filters"
    (dest / "portrait").mkdir(parents=True, exist_ok=True)
    for name in PORTRAITS:
        shutil.copyfile(fixtures / name, dest / "portrait" / name)


def corpus(cache: Path) -> dict[str, dict[str, Path]]:
    """{set: {file name: path}} for the sets jpeg, png, webp and portrait; fetched on first use."""
    dest = cache / "corpus"
    marker = dest / ".complete"
    if not marker.exists():
        cache.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=cache) as scratch:
            _fetch_wallpapers(dest, Path(scratch))
        _copy_portraits(dest)
        marker.touch()
    found = {name: {p.name: p for p in sorted((dest / name).glob("*"))} for name in [*WALLPAPERS, "portrait"]}
    return {name: files for name, files in found.items() if files}
