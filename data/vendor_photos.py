"""Vendor natural photos into rvar's embedded default (``rvar/assets/photos``), credits included.

Reads a folder laid out as ``kodak/*.png`` and ``wikimedia/*.jpg`` + ``wikimedia/SOURCES.txt`` (the pages the photos
come from), resizes each photo to at most ``--side`` pixels on its long side (Lanczos), writes it as
a JPEG and assigns it to a split by its position in the sorted list, a rule fixed before anyone looked at a
result: every fourth photo (positions 3, 7, 11, ...) is ``test``, of the others every fourth is ``val``, the rest
``train``. ``CREDITS.md`` lists every file with its source and licence note.

    python data/vendor_photos.py PHOTOS_DIR -o rvar/assets/photos
"""
from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path

KODAK_NOTE = "Kodak Lossless True Color Image Suite, released by the Eastman Kodak Company for unrestricted use"
WIKIMEDIA_NOTE = ("Wikimedia Commons; most are under a Creative Commons licence and need attribution: "
                  "see the file's page for its author and licence")


def split_of(position: int) -> str:
    if position % 4 == 3:
        return "test"
    return "val" if (position - position // 4) % 4 == 1 else "train"


def main(argv=None) -> int:
    from PIL import Image

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("photos", type=Path, help="folder with kodak/ and wikimedia/")
    parser.add_argument("-o", "--out", type=Path, default=Path("rvar/assets/photos"))
    parser.add_argument("--side", type=int, default=512, help="longest side in pixels (default 512)")
    parser.add_argument("--quality", type=int, default=90, help="JPEG quality (default 90)")
    args = parser.parse_args(argv)
    sources = (args.photos / "wikimedia" / "SOURCES.txt").read_text()
    entries = [(p, f"kodak_{p.stem}", KODAK_NOTE) for p in sorted((args.photos / "kodak").glob("*.png"))]
    entries += [(p, f"wikimedia_{p.stem}", WIKIMEDIA_NOTE + " (listed below)")
                for p in sorted((args.photos / "wikimedia").glob("*.jpg"))]
    if args.out.exists():
        shutil.rmtree(args.out)
    lines = ["# Credits of the vendored photos", "",
             "Natural photos of rvar's embedded default (`rvar.data.embedded`), resized to at most "
             f"{args.side} px on the long side and stored as JPEG (quality {args.quality}) by "
             "`data/vendor_photos.py`. The split is fixed by position (see that script).", "",
             "| file | split | source |", "|---|---|---|"]
    for position, (path, name, note) in enumerate(entries):
        split = split_of(position)
        (args.out / split).mkdir(parents=True, exist_ok=True)
        with Image.open(path) as image:
            image = image.convert("RGB")
            scale = args.side / max(image.size)
            if scale < 1:
                image = image.resize((round(image.width * scale), round(image.height * scale)), Image.LANCZOS)
            image.save(args.out / split / f"{name}.jpg", quality=args.quality)
        lines.append(f"| `{split}/{name}.jpg` | {split} | {note} |")
    lines += ["", "## Wikimedia Commons pages (the source set's SOURCES.txt, verbatim: it lists the pages of its photos "
              "without saying which file is which)", "", sources.strip()]
    (args.out / "CREDITS.md").write_text("\n".join(lines) + "\n")
    for split in ("train", "val", "test"):
        print(split, len(list((args.out / split).glob("*.jpg"))))
    return 0


if __name__ == "__main__":
    sys.exit(main())
