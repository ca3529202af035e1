"""Read rate on real photos: each decoder backend alone, and the kiosk's still-image pipeline.

DIR holds photos NAME.jpg|png, each beside NAME.txt with the text its code carries (read
with newline="": some texts hold a CRLF on purpose). A photo without NAME.txt has no code:
anything read there is a false positive. NAME.metadata.txt files are ignored. DIR is
searched recursively, so /work/shared/data/qr-photos covers all its folders.

  zxing     kiosk.decoders.make_decoder("zxing")  (one call; inverted tried inside)
  pyzbar    kiosk.decoders.make_decoder("pyzbar") (the photo and its negative)
  pipeline  kiosk.decoders.decode_still = what `python -m kiosk decode` prints (union of both)

A photo is read when a code carries the expected text (a product code also when it stands
for the same GTIN-14, e.g. UPC-A "036000291452" for EAN-13 "0036000291452"). Every other
code reported for a photo with an expected text is a wrong read; every code reported for a
photo without one is a false positive. Time is the median decode time per photo (the image
is loaded once, as grey, outside the timing).

Codes labelled on another photo of the same folder are counted apart ("other"): in these
sets they are codes really in the scene that the label does not mention (two barcodes on
one book, a QR inside a QR). "wrong_strict" counts them as wrong too.

Usage: python bench/readrate.py DIR [--symbologies qr,ean13,...] [--show-misses]
The last line is one JSON object.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import cv2

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from kiosk.decode import SYMBOLOGIES, Code  # noqa: E402
from kiosk.decoders import decode_still, make_decoder  # noqa: E402
from protocol.codes import Product, classify, is_valid_gtin, to_gtin14  # noqa: E402

SUFFIXES = (".png", ".jpg", ".jpeg")


def photos(folder: Path) -> list[tuple[Path, str | None]]:
    found = []
    for path in sorted(folder.rglob("*")):
        if path.suffix.lower() not in SUFFIXES or not path.is_file():
            continue
        expected_file = path.with_suffix(".txt")
        expected = None
        if expected_file.is_file():
            with open(expected_file, encoding="utf-8", newline="") as fh:
                expected = fh.read()
        found.append((path, expected))
    return found


def matches(code: Code, expected: str) -> bool:
    if code.text == expected:
        return True
    if is_valid_gtin(expected):
        product = classify(code.symbology, code.text)
        return isinstance(product, Product) and code.symbology != "qr" and product.gtin == to_gtin14(expected)
    return False


def run(decoders: dict, items: list, show_misses: bool) -> tuple[dict, dict]:
    """Per decoder: counts and median time; and per decoder the set of photos it read."""
    labels: dict[Path, set[str]] = {}
    for path, expected, _ in items:
        if expected is not None:
            labels.setdefault(path.parent, set()).add(expected)
    results, read_sets = {}, {}
    for name, decoder in decoders.items():
        read = wrong = other = false_positives = 0
        times, read_set = [], set()
        for path, expected, grey in items:
            started = time.perf_counter()
            codes = decoder(grey)
            times.append((time.perf_counter() - started) * 1000)
            if expected is None:
                false_positives += len(codes)
                if codes and show_misses:
                    print(f"  {name}: false positive in {path}: {codes}", file=sys.stderr)
                continue
            hits = [c for c in codes if matches(c, expected)]
            if hits:
                read += 1
                read_set.add(path)
            # A code labelled on another photo of the same folder is physically there (two
            # barcodes on one book, a QR inside a QR): reported apart from wrong reads.
            others = [c for c in codes if not hits.count(c) and any(matches(c, t) for t in labels[path.parent])]
            misses = [c for c in codes if c not in hits and c not in others]
            other += len(others)
            wrong += len(misses)
            if show_misses and (misses or not hits):
                print(f"  {name}: {path}: expected {expected!r}, got {codes}", file=sys.stderr)
        results[name] = {"read": read, "wrong": wrong, "other_codes": other, "wrong_strict": wrong + other,
                         "false_positives": false_positives,
                         "median_ms": round(statistics.median(times), 2) if times else None}
        read_sets[name] = read_set
    return results, read_sets


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("dir", type=Path)
    parser.add_argument("--symbologies", default=",".join(SYMBOLOGIES), help="comma-separated (default: %(default)s)")
    parser.add_argument("--show-misses", action="store_true", help="list misses and wrong reads on stderr")
    args = parser.parse_args()
    symbologies = tuple(s for s in args.symbologies.split(",") if s)
    found = photos(args.dir)
    if not found:
        sys.exit(f"no photos under {args.dir}")
    items = []
    for path, expected in found:
        grey = cv2.imread(str(path), cv2.IMREAD_GRAYSCALE)
        if grey is None:
            print(f"  cannot read {path}", file=sys.stderr)
            continue
        items.append((path, expected, grey))
    decoders = {
        "zxing": make_decoder("zxing", symbologies),
        "pyzbar": make_decoder("pyzbar", symbologies),
        "pipeline": lambda grey: decode_still(grey, symbologies),
    }
    for decoder in decoders.values():  # warm up (library load, caches)
        decoder(items[0][2])
    results, read_sets = run(decoders, items, args.show_misses)
    either = read_sets["zxing"] | read_sets["pyzbar"]
    pipeline_missed = sorted(str(p) for p in either - read_sets["pipeline"])

    total = sum(1 for _, expected, _ in items if expected is not None)
    empty = len(items) - total
    by_folder: dict[str, list] = {}
    for item in items:
        by_folder.setdefault(str(item[0].parent.relative_to(args.dir)) or ".", []).append(item)

    print(f"\nread rate: {len(items)} photos under {args.dir} ({total} with a code, {empty} without); "
          f"symbologies {','.join(symbologies)}\n")
    print(f"{'decoder':<9} {'read':>9} {'rate':>7} {'wrong':>6} {'other':>6} {'false+':>7} {'median ms':>10}")
    for name, r in results.items():
        print(f"{name:<9} {r['read']:>4}/{total:<4} {r['read'] / max(total, 1):>7.1%} {r['wrong']:>6} "
              f"{r['other_codes']:>6} {r['false_positives']:>7} {r['median_ms']:>10}")
    print(f"either backend alone read {len(either)}/{total}; the pipeline misses "
          f"{len(pipeline_missed)} of those{': ' + ', '.join(pipeline_missed) if pipeline_missed else ''}")
    print("wrong: a code that is neither the photo's label nor labelled on another photo of its folder;\n"
          "other: a code labelled on another photo of the same folder (mostly really in the scene, e.g. the\n"
          "second barcode on a Japanese book); strict wrong = wrong + other; false+: any code in a photo\n"
          "without a label.")
    if len(by_folder) > 1:
        print(f"\nper folder (read/labelled wrong other false+) {'  '.join(f'{n:>18}' for n in decoders)}")
        for folder, folder_items in by_folder.items():
            sub, _ = run(decoders, folder_items, False)
            n = sum(1 for _, e, _ in folder_items if e is not None)
            cells = "  ".join(f"{sub[name]['read']:>3}/{n:<3} {sub[name]['wrong']:>3} {sub[name]['other_codes']:>3} "
                              f"{sub[name]['false_positives']:>3}" for name in decoders)
            print(f"{folder:<44} {cells}")

    pipe = results["pipeline"]
    summary = {"bench": "readrate", "dir": str(args.dir), "photos": len(items), "symbologies": list(symbologies),
               "read": pipe["read"], "total": total, "wrong": pipe["wrong"], "other_codes": pipe["other_codes"],
               "wrong_strict": pipe["wrong"] + pipe["other_codes"],
               "false_positives": pipe["false_positives"], "median_ms": pipe["median_ms"],
               "either_backend_read": len(either), "pipeline_missed_vs_either": len(pipeline_missed),
               "zxing": results["zxing"], "pyzbar": results["pyzbar"], "pipeline": pipe}
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
