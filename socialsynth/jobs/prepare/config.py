"""The settings of `socialsynth prepare`: which raw comments to read and where to write the filtered ones."""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from socialsynth.core.config import ConfigError, comma_list, flag
from socialsynth.jobs.prepare.doccano import LAYOUTS, OUTPUT_FORMATS
from socialsynth.jobs.prepare.sources import COMMENT_COLUMNS, SUBMISSION_COLUMNS

FORMATS = ("reddit", "doccano")


def field_overrides(values: list[str], name: str, known: Iterable[str] = ()) -> dict[str, str]:
    """``["label=ups", ...]`` -> ``{"label": "ups"}``; a malformed item or a field not in ``known`` (when given) is
    a ConfigError naming the flag."""
    known = list(known)
    out = {}
    for value in values:
        key, sep, column = str(value).partition("=")
        if not sep or not key.strip() or not column.strip():
            raise ConfigError(name, f"expected FIELD=COLUMN, got {value!r}")
        if known and key.strip() not in known:
            raise ConfigError(name, f"unknown field {key.strip()!r} (fields: {', '.join(known)})")
        out[key.strip()] = column.strip()
    return out


def subreddit_names(values: list[str]) -> list[str]:
    """``--subreddit AskMen --subreddit r/college,GradSchool`` -> ["AskMen", "college", "GradSchool"]."""
    names: list[str] = []
    for value in values:
        for name in str(value).split(","):
            name = name.strip().removeprefix("/").removeprefix("r/")
            if name and name.lower() not in {n.lower() for n in names}:
                names.append(name)
    return names


@dataclass
class PrepareConfig:
    """Keep top-level comments whose score means something (the research code's filters: not top-level,
    removed/deleted, edited, a single link, media posts, posted more than 24 h after the post, crawled less than
    24 h after posting) and write them as JSON lines.

    Input is either one file already in the processed form (--input), or a comments file and a submissions file
    (--comments and --submissions): Pushshift dumps (JSON lines, .zst as downloaded) or flat tables
    (CSV/TSV/Parquet). Each comment is joined to its post by id. Column names are detected (comment text from
    body/text/comment, score from score/upvotes/label, ...); pin others with --comment-column and
    --submission-column. A filter whose input column is absent keeps every comment and the report says so.

    --format doccano converts doccano span annotations ({text, label: [[start, end, category]]} JSON lines, the
    seed's Annotation*.jsonl) into multi-label rows for train_classifier.py: a `label` list per post (--layout list)
    or one 0/1 column per category (--layout columns); -o ending in .jsonl, .csv or .tsv."""

    format: str = flag("reddit", "reddit: filter raw Reddit comments; doccano: convert doccano span annotations "
                       "(--input) to multi-label rows", choices=FORMATS)

    output: Path | None = flag(None, "the JSONL file to write; with --split-by-subreddit a folder receiving "
                               "<subreddit>.jsonl each (required)", names=("-o", "--output"), metavar="OUT")
    input: Path | None = flag(None, "comments already joined to their posts: .jsonl, .csv, .tsv or .parquet (needs "
                              "fields id and comment)", names=("--input", "-i"), metavar="RAW")
    comments: Path | None = flag(None, "comments: a Pushshift dump (.zst, .jsonl, .jsonl.gz) or a table (.csv, "
                                 ".tsv, .parquet)", metavar="FILE")
    submissions: Path | None = flag(None, "the posts the comments belong to, in the same kinds of file",
                                    names=("--submissions", "--posts"), metavar="FILE")
    comment_column: list[str] = flag(help="read our comment FIELD from COLUMN (fields: "
                                     + ", ".join(COMMENT_COLUMNS.candidates) + "); repeatable",
                                     append=True, metavar="FIELD=COLUMN", default_factory=list)
    submission_column: list[str] = flag(help="read our submission FIELD from COLUMN (fields: "
                                        + ", ".join(SUBMISSION_COLUMNS.candidates) + "); repeatable",
                                        names=("--submission-column", "--post-column"), append=True,
                                        metavar="FIELD=COLUMN", default_factory=list)
    subreddit: list[str] = flag(help="keep only these subreddits (case-insensitive; repeatable or comma-separated; "
                                "with --comments)", append=True, metavar="NAME", default_factory=list)
    split_by_subreddit: bool = flag(False, "write one <subreddit>.jsonl per subreddit into the folder -o (the "
                                    "layout generate_synthetic_data.py -d DIR -r SUB reads)",
                                    names=("--split-by-subreddit",))
    allow_pickle: bool = flag(False, "allow the research code's .pkl input (pickle can run code: only for files "
                              "you trust)")
    skip_bad_rows: bool = flag(False, "count and skip malformed rows instead of stopping at the first",
                               names=("--skip-bad-rows",))
    layout: str = flag("list", "--format doccano: list (a `label` column holding each post's categories, as the "
                       "seed's *_label.csv) or columns (one 0/1 column per category)", choices=LAYOUTS)
    categories: list[str] = flag(help="--format doccano: the categories, in column order (comma-separated or "
                                 "repeated); a span of another category is an error (default: every category found, "
                                 "sorted)", append=True, metavar="NAME[,NAME...]", default_factory=list)
    drop_unlabelled: bool = flag(False, "--format doccano: leave out posts without any span (the seed's *_label.csv "
                                 "did; kept by default, as examples of no personal information)",
                                 names=("--drop-unlabelled",))

    def __post_init__(self) -> None:
        if self.output is None:
            raise ConfigError("output", "is required: the file (or, with --split-by-subreddit, folder) to write")
        self._check_doccano()
        pair = self.comments is not None or self.submissions is not None
        if self.input is not None and pair:
            raise ConfigError("input", "give either --input RAW or --comments FILE --submissions FILE, not both")
        if pair and (self.comments is None or self.submissions is None):
            missing = "comments" if self.comments is None else "submissions"
            raise ConfigError(missing, f"--comments and --submissions go together: --{missing} is missing")
        if not pair and self.input is None:
            raise ConfigError("input", "give --input RAW, or --comments FILE and --submissions FILE")
        if not pair:
            only_pair = {"subreddit": self.subreddit, "split_by_subreddit": self.split_by_subreddit,
                         "comment_column": self.comment_column, "submission_column": self.submission_column}
            given = [name for name, value in only_pair.items() if value]
            if given:
                flags = ", ".join("--" + name.replace("_", "-") for name in given)
                raise ConfigError(given[0], f"{flags} only work with --comments/--submissions, not with --input")
        self.comment_fields = field_overrides(self.comment_column, "comment_column", COMMENT_COLUMNS.candidates)
        self.submission_fields = field_overrides(self.submission_column, "submission_column",
                                                 SUBMISSION_COLUMNS.candidates)
        self.subreddits = subreddit_names(self.subreddit)
        if self.subreddit and not self.subreddits:
            raise ConfigError("subreddit", f"no subreddit name in {self.subreddit} (every comment would be kept)")
        self._check_output()

    def _check_doccano(self) -> None:
        """--format doccano reads one --input and writes one table; its own flags need it."""
        if self.format not in FORMATS:
            raise ConfigError("format", f"must be one of {', '.join(FORMATS)}, got {self.format!r}")
        if self.layout not in LAYOUTS:
            raise ConfigError("layout", f"must be one of {', '.join(LAYOUTS)}, got {self.layout!r}")
        self.category_names = list(dict.fromkeys(c for value in self.categories for c in comma_list(value)))
        if self.format != "doccano":
            own = {"layout": self.layout != "list", "categories": self.categories, "drop_unlabelled":
                   self.drop_unlabelled}
            given = [name for name, value in own.items() if value]
            if given:
                raise ConfigError(given[0], "only works with --format doccano")
            return
        if self.categories and not self.category_names:
            raise ConfigError("categories", f"no category name in {self.categories}")
        if self.comments is not None or self.submissions is not None or self.input is None:
            raise ConfigError("input", "--format doccano reads one file: --input ANNOTATIONS.jsonl")
        suffix = Path(self.output).suffix.lower()
        if suffix not in OUTPUT_FORMATS:
            raise ConfigError("output", f"--format doccano writes .jsonl, .csv or .tsv, got {Path(self.output).name}")

    def _check_output(self) -> None:
        """-o is a file (a folder with --split-by-subreddit) and none of the inputs: it is replaced at the end."""
        out = Path(self.output)
        if self.split_by_subreddit and out.exists() and not out.is_dir():
            raise ConfigError("output", f"{out} is a file; with --split-by-subreddit -o is a folder")
        if not self.split_by_subreddit and out.is_dir():
            raise ConfigError("output", f"{out} is a folder: give a file name, or use --split-by-subreddit")
        place = next((p for p in (out, *out.parents) if p.exists()), Path("."))
        if place != out and not place.is_dir():
            raise ConfigError("output", f"{place} is a file, so {out} cannot be made; choose another -o")
        if not os.access(place if place.is_dir() else place.parent, os.W_OK | os.X_OK):
            raise ConfigError("output", f"cannot write in {place} (permission denied or read-only); choose another -o")
        for name in ("input", "comments", "submissions"):
            given = getattr(self, name)
            if given is not None and out.exists() and Path(given).exists() and out.resolve() == Path(given).resolve():
                raise ConfigError("output", f"{out} is also the --{name} file: it would be overwritten")

    @property
    def pair(self) -> bool:
        """Comments joined to submissions (rather than one processed file)."""
        return self.comments is not None
