"""gpu_check summary: every section's result file as one table, and a JSON copy.

  python3 -m scripts.gpu_sections.summary --results DIR [--json FILE]

Exit status 1 when a section failed (or left no result file: it crashed or ran out of time).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def load(results: Path, sections: list[str]) -> list[dict]:
    """One entry per expected section, in order; a missing result file counts as a failure."""
    out = []
    for name in sections:
        path = results / f"{name}.json"
        if path.is_file():
            out.append(json.loads(path.read_text()))
        else:
            out.append({"section": name, "status": "failed", "rows": [],
                        "note": "no result file: the section crashed or hit its time limit (see its log above)"})
    return out


def table(entries: list[dict]) -> str:
    lines = []
    width = max([len(str(r[0])) for e in entries for r in e["rows"]] + [20])
    for e in entries:
        lines.append(f"== {e['section']}: {e['status']}" + (f" ({e['note']})" if e["note"] else ""))
        for metric, value, unit in e["rows"]:
            shown = f"{value:.4g}" if isinstance(value, float) else str(value)
            lines.append(f"   {metric:{width}s}  {shown:>14s} {unit}".rstrip())
    return "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--results", type=Path, required=True)
    p.add_argument("--sections", nargs="+", required=True)
    p.add_argument("--json", type=Path, default=None, help="write the entries as JSON here")
    args = p.parse_args()
    entries = load(args.results, args.sections)
    print("\n==================== gpu_check summary ====================")
    print(table(entries))
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(entries, indent=1))
        print(f"JSON copy: {args.json}")
    raise SystemExit(1 if any(e["status"] == "failed" for e in entries) else 0)


if __name__ == "__main__":
    main()
