"""Build the bundled CIFAR-10 sample: trainables/_sample/cifar10-sample.tar.gz.

What it is
    A stratified sample of real CIFAR-10 (JPEG q75) images, small enough to ship
    inside the package so `dataset = "cifar10-sample"` works offline, out of the box,
    for the quickstart and the tests: 200 training and 50 test images per class,
    2,500 images in all (about 0.8 MB: gzip shares the identical JPEG
    headers and tables across files).

How it is made
    From the full archive (an ImageFolder tree train/<class>/NNNN.jpg,
    test/<class>/NNNN.jpg), a numpy Generator(seed) picks, class by class in sorted
    order, a fixed number of file names. The original JPEG bytes are copied as they
    are (no re-encoding, so pixels match the full archive). Tar entries are sorted,
    with mtime 0, uid/gid 0, empty owner names and mode 0644, in USTAR format, and the
    gzip header carries mtime 0 and no file name: the output is byte-for-byte
    reproducible for the same input, counts and seed.

Usage (from the repository root)
    python scripts/build_sample.py                                   # the defaults below
    python scripts/build_sample.py ARCHIVE --output OUT --seed 0 --train-per-class 200

    ARCHIVE defaults to ../shared/data/cifar10-jpeg.tar.gz, OUT to
    trainables/_sample/cifar10-sample.tar.gz (both relative to the repository root).
    The script prints the output's size and sha256.
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import io
import os
import sys
import tarfile
from pathlib import Path, PurePosixPath

import numpy as np

REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_ARCHIVE = REPO_ROOT.parent / "shared" / "data" / "cifar10-jpeg.tar.gz"
DEFAULT_OUTPUT = REPO_ROOT / "trainables" / "_sample" / "cifar10-sample.tar.gz"
SPLITS = ("train", "test")
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")


def read_archive(archive: Path) -> dict[tuple[str, str], dict[str, bytes]]:
    """{(split, class): {file name: bytes}} for every image of the ImageFolder archive."""
    images: dict[tuple[str, str], dict[str, bytes]] = {}
    with tarfile.open(archive, "r|*") as tf:
        for member in tf:
            parts = PurePosixPath(member.name).parts
            if not member.isfile() or len(parts) < 3 or parts[-3] not in SPLITS:
                continue
            if parts[-1].startswith(".") or not parts[-1].lower().endswith(IMAGE_SUFFIXES):
                continue
            handle = tf.extractfile(member)
            if handle is not None:
                images.setdefault((parts[-3], parts[-2]), {})[parts[-1]] = handle.read()
    return images


def choose(images: dict[tuple[str, str], dict[str, bytes]], per_class: dict[str, int],
           seed: int) -> list[tuple[str, bytes]]:
    """Sorted (tar path, bytes) of the sampled images; one Generator draws every pick."""
    rng = np.random.default_rng(seed)
    chosen: list[tuple[str, bytes]] = []
    for split, cls in sorted(images):
        names = sorted(images[split, cls])
        count = per_class[split]
        if count > len(names):
            raise SystemExit(f"{split}/{cls} has {len(names)} images; cannot sample {count}")
        for name in sorted(rng.choice(names, size=count, replace=False)):
            chosen.append((f"{split}/{cls}/{name}", images[split, cls][str(name)]))
    return sorted(chosen)


def write_tar_gz(entries: list[tuple[str, bytes]], output: Path) -> None:
    """Write a reproducible .tar.gz (fixed metadata, gzip mtime 0), atomically."""
    output.parent.mkdir(parents=True, exist_ok=True)
    tmp = output.with_name(output.name + ".tmp")
    with open(tmp, "wb") as raw, \
            gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0, compresslevel=9) as gz, \
            tarfile.open(fileobj=gz, mode="w", format=tarfile.USTAR_FORMAT) as tf:
        for name, data in entries:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            info.mtime = 0
            info.mode = 0o644
            info.uid = info.gid = 0
            info.uname = info.gname = ""
            tf.addfile(info, io.BytesIO(data))
    os.replace(tmp, output)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("archive", nargs="?", type=Path, default=DEFAULT_ARCHIVE,
                        help=f"the full ImageFolder archive (default: {DEFAULT_ARCHIVE})")
    parser.add_argument("--output", type=Path, default=DEFAULT_OUTPUT,
                        help=f"where to write the sample (default: {DEFAULT_OUTPUT})")
    parser.add_argument("--train-per-class", type=int, default=200)
    parser.add_argument("--test-per-class", type=int, default=50)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    if not args.archive.is_file():
        parser.error(f"archive not found: {args.archive}")

    images = read_archive(args.archive)
    classes = sorted({cls for _, cls in images})
    if not classes or any((split, cls) not in images for split in SPLITS for cls in classes):
        parser.error(f"{args.archive} is not an ImageFolder tree of train/<class>, test/<class>")
    per_class = {"train": args.train_per_class, "test": args.test_per_class}
    entries = choose(images, per_class, args.seed)
    write_tar_gz(entries, args.output)

    digest = hashlib.sha256(args.output.read_bytes()).hexdigest()
    print(f"wrote {args.output}: {len(entries)} images ({len(classes)} classes x "
          f"{args.train_per_class} train + {args.test_per_class} test), "
          f"{args.output.stat().st_size:,} bytes, sha256 {digest}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
