"""Rebuild data/split_groups.json, the cross-source split table (see data/grouping.py), from the registered
datasets' files (the mirror), and say what it links and how many items of each dataset it moves.

    python scripts/split_groups.py            # writes data/split_groups.json (atomically)
    python scripts/split_groups.py --check    # exit 1 when the committed table is not what the files give

"Moves" compares each item's split (seed 0, 0.8/0.1/0.1) by its own group with its split by the table:
the datasets registered first keep theirs, except where the table links them to an earlier dataset's
instruction or to a reserved one.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from collections import Counter
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
from data.dataset_registry import link_registry, list_datasets, load_items  # noqa: E402
from data.grouping import SPLIT_GROUPS_FILE, load_split_groups  # noqa: E402
from data.splits import assign, split_of  # noqa: E402


def moves(table) -> dict[str, Counter]:
    out = {}
    for ds in list_datasets():
        c = Counter()
        for split, item in assign(load_items(ds.name), groups=table):
            before = split_of(item.group)
            c["items"] += 1
            if split != before:
                c[f"{before}->{split}"] += 1
        out[ds.name] = c
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--check", action="store_true", help="compare with the committed table, write nothing")
    args = p.parse_args(argv)
    table = link_registry()
    text = json.dumps(table.to_json(), indent=1, ensure_ascii=False) + "\n"
    if args.check:
        current = load_split_groups()
        same = (current.aliases, current.reserved) == (table.aliases, table.reserved)
        print(f"{SPLIT_GROUPS_FILE}: {'current' if same else 'STALE: rebuild it with python scripts/split_groups.py'}")
        return 0 if same else 1
    fd, tmp = tempfile.mkstemp(dir=SPLIT_GROUPS_FILE.parent, prefix=".split_groups.")
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        fh.write(text)
    os.replace(tmp, SPLIT_GROUPS_FILE)
    print(
        f"wrote {SPLIT_GROUPS_FILE}: {len(table.aliases)} groups follow another's split, {len(table.reserved)} reserved"
    )
    for name, c in moves(table).items():
        moved = {k: v for k, v in c.items() if k != "items"}
        if moved:
            print(f"  {name}: {sum(moved.values())} of {c['items']} items change split: {dict(sorted(moved.items()))}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
