"""`socialsynth rate-sheet OUTPUT`: a blind sheet of rewrite pairs for people to rate.

The judges' agreement with people is measured on the human file's pairs of real comments; this sheet measures it on
our own rewrites. From a normness output it draws pairs of two versions of one comment (the original and its
rewrites at different target levels), hides which is which, and writes

- ``OUTPUT.csv``: the pairs in the human file's schema (topic, pair_id, comment1_id, title1, description1,
  comment1, comment2_id, title2, description2, comment2, then one empty column per dimension for the rater),
- ``OUTPUT.html``: the same pairs as a plain, self-contained form (no network) whose button saves the answers as a
  CSV of that schema, and
- ``OUTPUT.key.json``: which record and which version (``original`` or the target level) each side is. Keep it
  away from the raters.

The filled CSV goes straight into ``generate_synthetic_data.py --judge-agreement FILLED.csv``.

    socialsynth rate-sheet sheets/askmen --input output/askmen_formality.jsonl --pairs 40 --seed 0
"""

from __future__ import annotations

import csv
import dataclasses
import io
import itertools
import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from socialsynth.core.config import ConfigError, check_min, comma_list, flag, parse
from socialsynth.core.errors import InputError
from socialsynth.core.io import atomic_write_json, atomic_write_text, read_records
from socialsynth.prompts import known_dimensions, load_dimension

PROG = "socialsynth rate-sheet"
SHEET_COLUMNS = ("topic", "pair_id", "comment1_id", "title1", "description1", "comment1", "comment2_id", "title2",
                 "description2", "comment2")
VERSIONS = ("original", "1", "2", "3", "4", "5")  # the texts of one record: the original, then each target level
HARD_TO_TELL = "hard-to-tell"


@dataclass
class RateSheetConfig:
    """Write a blind sheet of rewrite pairs (CSV, an HTML form, and a separate key) for people to rate."""

    output: Path | None = flag(None, "where the sheet goes: OUTPUT.csv, OUTPUT.html and OUTPUT.key.json (also the "
                               "first word after rate-sheet)", names=("-o", "--output"), metavar="OUTPUT")
    input: Path = flag(Path("output/askmen_formality.jsonl"), "a normness output (generate_synthetic_data.py)",
                       names=("-i", "--input"))
    pairs: int = flag(40, "how many pairs to draw (fewer when the output has fewer distinct pairs)",
                      names=("--pairs",), metavar="N")
    seed: int = flag(0, "seed of the draw, the order and the sides", names=("--seed",), metavar="S")
    dimension: list[str] | None = flag(None, "the dimension(s) people rate, one answer column each (default: the "
                                       "output's own, from its provenance)", names=("--dimension",), metavar="D",
                                       convert=comma_list)
    topic: str | None = flag(None, "the topic column (default: the subreddit, from the input's file name)",
                             names=("--topic",))
    overwrite: bool = flag(False, "replace an existing sheet (it may hold a rater's answers)", names=("--overwrite",))

    def __post_init__(self) -> None:
        if self.output is None:
            raise ConfigError("output", "name the sheet: socialsynth rate-sheet OUTPUT --input FILE.jsonl")
        self.output = Path(str(self.output).removesuffix(".csv"))
        check_min(self, "pairs", 1)
        check_min(self, "seed", 0)
        if not Path(self.input).is_file():
            raise ConfigError("input", f"no such file: {self.input}")
        for dim in self.dimension or ():
            if dim not in known_dimensions():
                raise ConfigError("dimension", f"unknown dimension {dim!r}; known: {', '.join(known_dimensions())}")
        if not self.overwrite:
            taken = [str(p) for p in sheet_paths(self.output).values() if p.exists()]
            if taken:
                raise ConfigError("output", f"{', '.join(taken)} exists (it may hold answers); choose another "
                                  "OUTPUT or pass --overwrite")


def sheet_paths(output: Path) -> dict[str, Path]:
    return {kind: Path(f"{output}.{kind}") for kind in ("csv", "html", "key.json")}


# -- drawing the pairs -------------------------------------------------------------------------------------------
def record_versions(record: dict) -> list[tuple[str, str]]:
    """The distinct non-empty texts of one record as (version, text): the original and each level's rewrite. A
    rewrite identical to an earlier version is left out (a pair of one text twice asks nothing)."""
    seen, out = set(), []
    for version in VERSIONS:
        text = record.get("original_comment" if version == "original" else version)
        if isinstance(text, str) and text.strip() and text.strip() not in seen:
            seen.add(text.strip())
            out.append((version, text))
    return out


def draw_pairs(records: Sequence[dict], n: int, seed: int) -> list[tuple[dict, tuple[str, str], tuple[str, str]]]:
    """Up to ``n`` pairs (record, side 1, side 2): records in a random order, one pair each per round (so the
    pairs spread over as many comments as possible), a random unused pair of versions each time, random sides."""
    rng = np.random.default_rng(seed)
    pools = []
    for i in rng.permutation(len(records)):
        combos = list(itertools.combinations(record_versions(records[i]), 2))
        if combos:
            pools.append((records[i], [combos[j] for j in rng.permutation(len(combos))]))
    chosen = []
    while len(chosen) < n and any(pool for _, pool in pools):
        for record, pool in pools:
            if pool and len(chosen) < n:
                first, second = pool.pop()
                chosen.append((record, *((second, first) if rng.random() < 0.5 else (first, second))))
    return chosen


def read_output(path: Path) -> list[dict]:
    records = read_records(path, required=("id", "original_comment")).records
    if not records:
        raise InputError("no records", path=path)
    return records


def sheet_dimensions(cfg: RateSheetConfig, records: Sequence[dict]) -> list[str]:
    """--dimension, else the output's own dimension (from the records' provenance)."""
    if cfg.dimension:
        return list(dict.fromkeys(cfg.dimension))
    found = {str((r.get("provenance") or {}).get("dimension") or "") for r in records} - {""}
    if len(found) != 1:
        raise InputError(f"cannot tell the output's dimension (found {sorted(found) or 'none'}); name it with "
                         "--dimension", path=cfg.input, field="provenance.dimension")
    dim = found.pop()
    if dim not in known_dimensions():
        raise InputError(f"dimension {dim!r} is not a known one; name one with --dimension", path=cfg.input)
    return [dim]


def sheet_topic(cfg: RateSheetConfig, dims: Sequence[str]) -> str:
    """--topic, else the subreddit: the input's name without its "_<dimension>" ending."""
    if cfg.topic:
        return cfg.topic
    stem = Path(cfg.input).stem
    for dim in dims:
        stem = stem.removesuffix(f"_{dim}")
    return stem


def build_sheet(pairs, dims: Sequence[str], topic: str) -> tuple[list[dict], list[dict]]:
    """The sheet rows (human file schema, answer columns empty) and the key (what each side is)."""
    rows, key = [], []
    for k, (record, (v1, text1), (v2, text2)) in enumerate(pairs):
        pair_id = f"{topic}_{k:03d}"
        title = str(record.get("submission_title") or "")
        rows.append({"topic": topic, "pair_id": pair_id, "comment1_id": f"{topic}_c{2 * k:03d}", "title1": title,
                     "description1": "", "comment1": text1, "comment2_id": f"{topic}_c{2 * k + 1:03d}",
                     "title2": title, "description2": "", "comment2": text2, **{d: "" for d in dims}})
        key.append({"pair_id": pair_id, "record_id": str(record["id"]), "comment1": v1, "comment2": v2})
    return rows, key


def to_csv(rows: Sequence[dict], columns: Sequence[str]) -> str:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(columns), lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return buf.getvalue()


# -- the HTML form -----------------------------------------------------------------------------------------------
HTML_PAGE = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>Rating sheet: __TITLE__</title>
<style>
body { font-family: sans-serif; max-width: 70em; margin: 1em auto; padding: 0 1em; line-height: 1.4; }
.pair { border: 1px solid #999; border-radius: 6px; margin: 1.2em 0; padding: .6em 1em; }
.sides { display: flex; gap: 1em; } .side { flex: 1; background: #f4f4f4; padding: .5em; white-space: pre-wrap; }
.title { color: #555; font-style: italic; } .q { margin: .5em 0; } .q label { margin-right: 1.2em; }
#bar { position: sticky; top: 0; background: #fff; padding: .5em 0; border-bottom: 1px solid #ccc; }
</style></head><body>
<h1>Which comment rates higher?</h1>
<p>Each box shows two comments. For each question choose <b>1</b> or <b>2</b> (the comment higher on the scale), or
<b>hard to tell</b>. Your answers are kept in this browser while you work; press <b>Save answers</b> to download them
as a CSV file and send that file back.</p>
<div id="bar"><button id="save" type="button">Save answers (CSV)</button> <span id="count"></span></div>
<form id="sheet"></form>
<script id="data" type="application/json">__DATA__</script>
<script>
"use strict";
const DATA = JSON.parse(document.getElementById("data").textContent);
const STORE = "rate-sheet:" + DATA.name;
let answers = {};
try { answers = JSON.parse(localStorage.getItem(STORE) || "{}"); } catch (e) { answers = {}; }
const form = document.getElementById("sheet");
function el(tag, cls, text) {
  const node = document.createElement(tag);
  if (cls) node.className = cls;
  if (text !== undefined) node.textContent = text;
  return node;
}
DATA.rows.forEach(function (row, i) {
  const box = el("fieldset", "pair");
  box.appendChild(el("legend", null, "Pair " + (i + 1) + " of " + DATA.rows.length));
  if (row.title1) box.appendChild(el("div", "title", "Post: " + row.title1));
  const sides = el("div", "sides");
  [1, 2].forEach(function (s) {
    const side = el("div", "side");
    side.appendChild(el("b", null, "Comment " + s));
    side.appendChild(el("div", null, row["comment" + s]));
    sides.appendChild(side);
  });
  box.appendChild(sides);
  DATA.dimensions.forEach(function (dim) {
    const q = el("div", "q");
    q.appendChild(el("span", null, DATA.questions[dim] + " "));
    [["1", "1"], ["2", "2"], ["hard-to-tell", "hard to tell"]].forEach(function (choice) {
      const label = el("label");
      const input = document.createElement("input");
      input.type = "radio"; input.name = row.pair_id + "|" + dim; input.value = choice[0];
      input.checked = answers[input.name] === choice[0];
      input.addEventListener("change", function () {
        answers[input.name] = input.value;
        try { localStorage.setItem(STORE, JSON.stringify(answers)); } catch (e) { /* file:// may forbid it */ }
        count();
      });
      label.appendChild(input); label.appendChild(document.createTextNode(" " + choice[1]));
      q.appendChild(label);
    });
    box.appendChild(q);
  });
  form.appendChild(box);
});
function count() {
  const done = Object.keys(answers).filter(function (k) { return answers[k]; }).length;
  document.getElementById("count").textContent =
    done + " of " + DATA.rows.length * DATA.dimensions.length + " answered";
}
function cell(value) {
  return '"' + String(value === undefined || value === null ? "" : value).replace(/"/g, '""') + '"';
}
document.getElementById("save").addEventListener("click", function () {
  const lines = [DATA.columns.map(cell).join(",")];
  DATA.rows.forEach(function (row) {
    lines.push(DATA.columns.map(function (c) {
      return cell(DATA.dimensions.indexOf(c) >= 0 ? (answers[row.pair_id + "|" + c] || "") : row[c]);
    }).join(","));
  });
  const blob = new Blob([lines.join("\\n") + "\\n"], { type: "text/csv;charset=utf-8" });
  const link = document.createElement("a");
  link.href = URL.createObjectURL(blob);
  link.download = DATA.name + ".filled.csv";
  document.body.appendChild(link); link.click(); link.remove();
});
count();
</script></body></html>
"""


def to_html(rows: Sequence[dict], columns: Sequence[str], dims: Sequence[str], name: str) -> str:
    """The form: the pairs as JSON inside the page (no request leaves it), drawn and read back by a small script.
    Texts are set with textContent, so a comment can hold any markup without breaking the page."""
    questions = {}
    for dim in dims:
        levels = load_dimension(dim).level_names
        questions[dim] = f"Which comment rates higher on {dim} (from “{levels[0]}” to “{levels[-1]}”)?"
    data = {"name": name, "columns": list(columns), "dimensions": list(dims), "questions": questions,
            "rows": list(rows)}
    # "</" would end the script element early; "<\/" reads the same in JSON.
    blob = json.dumps(data, ensure_ascii=False).replace("</", "<\\/")
    return HTML_PAGE.replace("__TITLE__", name.replace("&", "&amp;").replace("<", "&lt;")).replace("__DATA__", blob)


# -- the command -------------------------------------------------------------------------------------------------
def split_output_word(argv: Sequence[str]) -> list[str]:
    """``rate-sheet OUTPUT [flags]`` -> ``[flags] --output OUTPUT``: the one word that is no flag's value is the
    sheet's name (the shared config parser takes flags only)."""
    takes_value = {"--config", "--preset"}
    for f in dataclasses.fields(RateSheetConfig):
        if f.type not in ("bool",):
            names = f.metadata.get("names") or (f"--{f.name}",)
            takes_value.update(names)
            takes_value.update(n.replace("-", "_") if n.startswith("--") else n for n in names)
            takes_value.update("--" + n[2:].replace("_", "-") for n in names if n.startswith("--"))
    rest, words = [], []
    args = list(argv)
    while args:
        arg = args.pop(0)
        if arg.startswith("-") and arg != "-":
            rest.append(arg)
            if "=" not in arg and arg in takes_value and args:
                rest.append(args.pop(0))
        else:
            words.append(arg)
    if len(words) > 1:
        raise ConfigError("output", f"one OUTPUT only, got {' '.join(words)}")
    return rest + (["--output", words[0]] if words else [])


def main(argv: Sequence[str] | None = None) -> int:
    import sys

    cfg = parse(RateSheetConfig, split_output_word(sys.argv[1:] if argv is None else argv), prog=PROG,
                description=__doc__)
    records = read_output(Path(cfg.input))
    dims = sheet_dimensions(cfg, records)
    topic = sheet_topic(cfg, dims)
    pairs = draw_pairs(records, cfg.pairs, cfg.seed)
    if not pairs:
        raise InputError("no record has two different non-empty versions (original and rewrites) to pair",
                         path=cfg.input)
    rows, key = build_sheet(pairs, dims, topic)
    columns = [*SHEET_COLUMNS, *dims]
    paths = sheet_paths(cfg.output)
    paths["csv"].parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(paths["csv"], to_csv(rows, columns))
    atomic_write_text(paths["html"], to_html(rows, columns, dims, cfg.output.name))
    atomic_write_json(paths["key.json"], {
        "input": str(cfg.input), "dimensions": dims, "topic": topic, "seed": cfg.seed, "pairs_requested": cfg.pairs,
        "note": "keep this file away from the raters: it says which version each side is",
        "pairs": key})
    fewer = f" (only {len(rows)} distinct pairs in {cfg.input})" if len(rows) < cfg.pairs else ""
    print(f"{len(rows)} pairs{fewer} from {len(records)} records, dimension(s) {', '.join(dims)}")
    for kind, path in paths.items():
        print(f"written: {path}" + ("  (the key: keep it from the raters)" if kind == "key.json" else ""))
    print("once filled (the CSV, or the form's saved answers): generate_synthetic_data.py --judge-agreement "
          "FILLED.csv --judge SPEC ...")
    return 0
