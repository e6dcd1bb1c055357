"""Other tools' formats on the shared data: export, re-import into a fresh project, and check the examples and labels
come back identical (tokens, character offsets, heads and tails); seconds, records/s and file size per format.

    python bench_interchange.py [--imdb 5000] [--conll 14041] [--semeval 8000]

IMDb carries Llama-2-70b's labels as well (imported annotations), so the Label Studio tasks hold predictions too.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path
from typing import Any

from shared_data import DATA, records, write

from llmaaa_local.config import LabelInfo, ProjectSettings
from llmaaa_local.interchange import FOREIGN
from llmaaa_local.project import Project

OUT_NAMES = {"label-studio": "tasks.json", "prodigy": "prodigy.jsonl", "spacy": "train.spacy", "hf": "dataset",
             "parquet": "labels.parquet", "jsonl": "labels.jsonl"}


def size(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*")) if path.is_dir() else path.stat().st_size


def contents(project: Project) -> list[tuple[Any, ...]]:
    return [(e.id, e.text, e.tokens, e.offsets, e.head, e.tail, e.label) for e in project.store.examples()]


def run(name: str, task: str, rows: list[dict[str, Any]], tmp: Path, extra: list[dict[str, Any]] | None) -> None:
    labels = sorted({str(label) for row in rows for label in _labels(task, row)})
    settings = ProjectSettings(task, tuple(LabelInfo(label) for label in labels),  # type: ignore[arg-type]
                               no_relation="Other" if task == "re" else None)
    source = write(tmp / f"{name}.jsonl", rows)
    with Project.init(tmp / name, settings) as project:
        project.import_gold(source, "test")
        if extra is not None:
            project.import_annotations(write(tmp / f"{name}-llm.jsonl", extra), "llama70b")
        original = contents(project)
        print(f"\n{name}: {len(original)} {task} examples")
        print(f"{'format':<13}{'export s':>10}{'records/s':>11}{'import s':>10}{'records/s':>11}{'MB':>8}  same")
        for fmt in ("jsonl", *FOREIGN[task]):  # type: ignore[index]
            out = tmp / f"{name}-{fmt}" / OUT_NAMES[fmt]
            started = time.perf_counter()
            written = project.export_labels(out, fmt)
            exported = time.perf_counter() - started
            if fmt == "spacy":  # written only: spaCy's own reader is checked in the tests
                print(f"{fmt:<13}{exported:>10.2f}{written / exported:>11,.0f}{'-':>10}{'-':>11}"
                      f"{size(out) / 1e6:>8.1f}  (export only)")
                continue
            fresh_settings = ProjectSettings(task, settings.labels, no_relation=settings.no_relation)  # type: ignore[arg-type]
            with Project.init(tmp / f"{name}-{fmt}-fresh", fresh_settings) as fresh:
                started = time.perf_counter()
                fresh.import_gold(out, "test", fmt)
                imported = time.perf_counter() - started
                same = contents(fresh) == original
            print(f"{fmt:<13}{exported:>10.2f}{written / exported:>11,.0f}{imported:>10.2f}"
                  f"{written / imported:>11,.0f}{size(out) / 1e6:>8.1f}  {'yes' if same else 'NO'}")


def _labels(task: str, row: dict[str, Any]) -> list[str]:
    if task == "ner":
        return sorted({tag[2:] for tag in row["tags"] if tag != "O"})
    return [row["label"]]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--imdb", type=int, default=5000)
    parser.add_argument("--conll", type=int, default=14041)
    parser.add_argument("--semeval", type=int, default=8000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        tmp = Path(folder)
        imdb = records(DATA / "imdb" / "train.jsonl.gz")[: args.imdb]
        llama = {r["id"]: r["llama2_70b_chat"] for r in records(DATA / "imdb" / "llama2_70b_train.jsonl")}
        run("imdb", "classify", imdb, tmp, [{"id": r["id"], "label": llama[r["id"]]} for r in imdb])
        run("conll2003", "ner", records(DATA / "conll2003" / "train.jsonl")[: args.conll], tmp, None)
        run("semeval2010", "re", records(DATA / "semeval2010_task8" / "train.jsonl")[: args.semeval], tmp, None)


if __name__ == "__main__":
    main()
