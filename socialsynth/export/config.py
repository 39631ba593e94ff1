"""The settings of `socialsynth export`: one declared config whose fields are its flags."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from socialsynth.core.config import ConfigError, check_min, check_output_folder, comma_list, flag
from socialsynth.export.writers import FORMATS

_REPO_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")


@dataclass
class ExportConfig:
    """Publish a job's outputs: Parquet, JSONL or a `datasets` folder, with a data card (README.md)."""

    input: Path | None = flag(None, "the output folder of a socialsynth job (or one of its *.meta.json); may also "
                              "be given first, without the flag", names=("-i", "--input"), metavar="OUTPUT_DIR")
    output: Path | None = flag(None, "the folder to write the export into (must not exist or be empty, unless "
                               "--overwrite)", names=("-o", "--output"), metavar="DIR")
    format: str = flag("parquet", "parquet: flat typed columns, snappy; jsonl: the records as they are; hf: a "
                       "datasets folder (save_to_disk)", choices=FORMATS)
    overwrite: bool = flag(False, "replace the export folder's content when it is not empty")
    license: str = flag("other", "the license in the card (a Hub license id such as cc-by-nc-4.0); 'other' adds "
                        "a note to choose one that fits the source data's terms")
    language: list[str] = flag(None, "the languages of the text, comma-separated ISO 639-1 codes",
                               convert=comma_list, default_factory=lambda: ["en"])
    pretty_name: str | None = flag(None, "the data set's name in the card (default: from the jobs)")
    public_viewer: bool = flag(False, "write viewer: true in the card (default false: the Hub shows no rows of "
                               "data derived from social-media users)")
    max_rows_per_file: int = flag(100_000, "start another file of a split after this many rows")
    push_to_hub: str | None = flag(None, "after writing, push the export to this Hub data set (USER/NAME); the "
                                   "only network call of socialsynth, never made without this flag; the token "
                                   "comes from HF_TOKEN or `hf auth login`", metavar="REPO")
    private: bool = flag(True, "make the Hub data set private when --push-to-hub creates it")
    public: bool = flag(False, "make the Hub data set public (the same as --no-private)")
    verbose: bool = flag(False, "log more", names=("-v", "--verbose"))

    def __post_init__(self) -> None:
        if self.input is None:
            raise ConfigError("input", "give the output folder of a job to export (socialsynth export OUTPUT_DIR "
                                       "-o DIR)")
        if self.output is None:
            raise ConfigError("output", "give the folder to write the export into (-o DIR)")
        self.input, self.output = Path(self.input), Path(self.output)
        check_min(self, "max_rows_per_file", 1)
        check_output_folder(self, "output")
        if self.output.exists() and any(self.output.iterdir()) and not self.overwrite:
            raise ConfigError("output", f"{self.output} exists and is not empty; choose another folder or pass "
                                        "--overwrite to replace its content")
        inside = self.input.resolve()
        if self.output.resolve() in (inside, *inside.parents):
            raise ConfigError("output", f"{self.output} holds the outputs being exported; choose another folder")
        if self.push_to_hub is not None and not _REPO_ID.match(self.push_to_hub):
            raise ConfigError("push_to_hub", f"{self.push_to_hub!r} is not a Hub repository id (USER/NAME)")
        if not self.language or any(not re.fullmatch(r"[a-z]{2,3}(-[A-Za-z0-9]+)?", x) for x in self.language):
            raise ConfigError("language", f"expected ISO 639-1 codes such as en or en,zh, got {self.language}")

    @property
    def hub_private(self) -> bool:
        """Private unless --public or --no-private."""
        return self.private and not self.public
