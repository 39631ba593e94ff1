"""Declared job configs: one dataclass per job whose fields *are* the flags and the job file.

Each field says its flag names, help, default and choices through :func:`flag`; nested dataclass fields are shared
groups whose flags are spread into the same parser (:class:`RangeArgs` here; ``ModelArgs`` and ``SamplingArgs`` in
:mod:`socialsynth.llm.args`). :func:`parse` builds argparse from the dataclass, reads ``--config job.yaml`` (any
flag, under its field or long name; flags on the command line override the file), answers ``--print-config`` (the
resolved config as YAML that ``--config`` accepts), and returns the validated config. Validation lives in each
dataclass's ``__post_init__`` and raises :class:`ConfigError`; :func:`parse` turns it into one line naming the flag
(exit 2), before any model loads.

Example::

    @dataclass
    class EchoConfig:
        text: str = flag("hello", "what to print", names=("-t", "--text"))
        times: int = flag(1, "how often")
        range: RangeArgs = group(RangeArgs)

        def __post_init__(self):
            check_min(self, "times", 1)

    cfg = parse(EchoConfig, ["--times", "3"], prog="echo")   # EchoConfig(text='hello', times=3, ...)
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
import types
import typing
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

import yaml

from socialsynth import presets
from socialsynth.core.errors import EXIT_BAD_INPUT, InputError

C = TypeVar("C")
REPO_ROOT = Path(__file__).resolve().parents[2]


def default_dir(name: str) -> Path:
    """`data/` or `output/` of the source checkout when run from one, else relative to the working directory."""
    candidate = REPO_ROOT / name
    if (REPO_ROOT / "pyproject.toml").exists():
        try:
            return candidate.relative_to(Path.cwd())
        except ValueError:
            return candidate
    return Path(name)


_MISSING = dataclasses.MISSING


class ConfigError(InputError):
    """A bad config value. ``name`` is the dataclass field; :func:`parse` reports it under its flag."""

    def __init__(self, name: str, message: str) -> None:
        self.name = name
        super().__init__(message, field="--" + name.replace("_", "-"))


# ------------------------------------------------------------------------------------------- declaring fields


def flag(
    default: Any = _MISSING,
    help: str = "",  # noqa: A002  (the argparse word)
    *,
    names: Sequence[str] = (),
    choices: Sequence[Any] | None = None,
    metavar: str | None = None,
    convert: Callable[[str], Any] | None = None,
    append: bool = False,
    several: bool = False,
    default_factory: Callable[[], Any] | None = None,
    cli: bool = True,
) -> Any:
    """A config field that is also a flag.

    Args:
        default: the default value (or use ``default_factory``).
        help: the flag's help text; the default is appended to it.
        names: flag spellings, e.g. ``("-r", "--subreddit")``; every long name also gets its dashed or
            underscored twin (``--norm_dimension`` and ``--norm-dimension``). Default: ``--field-name``.
        choices: allowed values.
        metavar: the placeholder in ``--help``.
        convert: turns the command-line (or job-file) string into the field's value, e.g. "1,5" -> (1, 5);
            must raise ValueError on bad text.
        append: the flag may be repeated; the field is a list.
        several: with ``append``, one flag may also take several values (``--train a.csv b.csv``).
        default_factory: a callable that makes the default (for mutable or environment-dependent defaults).
        cli: False keeps the field out of the parser (set only from Python or a job file).
    """
    meta = {"help": help, "names": tuple(names), "choices": choices, "metavar": metavar, "convert": convert,
            "append": append, "several": several, "cli": cli}
    if default_factory is not None:
        return dataclasses.field(default_factory=default_factory, metadata=meta)
    return dataclasses.field(default=default, metadata=meta)


def overwrite_flag() -> Any:
    """The ``--overwrite`` field of every job that resumes into its output (see socialsynth.core.run.JobRun)."""
    return flag(False, "start over: delete this run's output and run record instead of resuming (needed to reuse an "
                "output made with other settings; rerunning an interrupted --overwrite run resumes it)")


def report_flag() -> Any:
    """The ``--report`` field of every job: at the end of a finished run, write ``<name>.report.html`` beside the run
    record (``socialsynth report`` on this run; see socialsynth.core.run.on_finish)."""
    return flag(False, "at the end of the run, write <name>.report.html beside the run record: one offline HTML page "
                "to read this run's outputs (the same as `socialsynth report <record>`)")


def group(cls: type, **overrides: Any) -> Any:
    """A nested shared group (its flags are spread into the job's parser); ``overrides`` change its defaults."""
    return dataclasses.field(default_factory=lambda: cls(**overrides), metadata={"group": True})


# ------------------------------------------------------------------------------------------- validation helpers


def check_min(cfg: Any, name: str, low: float, *, inclusive: bool = True) -> None:
    """Raise ConfigError unless ``cfg.name`` is at least ``low`` (above it when not inclusive); None passes."""
    value = getattr(cfg, name)
    if value is None:
        return
    if value < low or (not inclusive and value == low):
        word = "at least" if inclusive else "above"
        raise ConfigError(name, f"must be {word} {low}, got {value}")


def looks_like_path(name: str) -> bool:
    """A model name written as a local path rather than a Hub id (``org/name``): ``/x``, ``./x``, ``~/x``, ``x/``,
    or several folders (``a/b/c``)."""
    name = str(name)
    return name.startswith(("/", ".", "~")) or "\\" in name or name.count("/") > 1 or name.endswith("/")


def missing_folder(name: str) -> bool:
    """A model name written as a path that does not exist here (checked while parsing, before any model loads)."""
    return looks_like_path(name) and not Path(str(name)).expanduser().exists()


def check_output_folder(cfg: Any, name: str) -> None:
    """Raise ConfigError naming the flag unless the folder ``cfg.name`` can be made and written in: no file in its
    place or on its way, and the nearest existing folder writable."""
    path = Path(getattr(cfg, name))
    if path.exists() and not path.is_dir():
        raise ConfigError(name, f"{path} is a file, not a folder; choose another place")
    place = next((p for p in (path, *path.parents) if p.exists()), Path("."))
    if not place.is_dir():
        raise ConfigError(name, f"{place} is a file, so {path} cannot be made; choose another place")
    if not os.access(place, os.W_OK | os.X_OK):
        raise ConfigError(name, f"cannot write in {place} (permission denied or read-only); choose another place")


def check_range(cfg: Any, name: str, low: float, high: float, *, low_open: bool = False,
                high_open: bool = False) -> None:
    """Raise ConfigError unless ``low <= cfg.name <= high`` (ends excluded when open); None passes."""
    value = getattr(cfg, name)
    if value is None:
        return
    ok = (low < value if low_open else low <= value) and (value < high if high_open else value <= high)
    if not ok:
        left, right = "(" if low_open else "[", ")" if high_open else "]"
        raise ConfigError(name, f"must be in {left}{low}, {high}{right}, got {value}")


def check_choice(cfg: Any, name: str, allowed: Sequence[Any]) -> None:
    """Raise ConfigError unless ``cfg.name`` is one of ``allowed`` (for values set from Python or YAML)."""
    value = getattr(cfg, name)
    if value not in allowed:
        raise ConfigError(name, f"must be one of {', '.join(map(str, allowed))}, got {value!r}")


def comma_list(text: str) -> list[str]:
    """'a, b,c' -> ['a', 'b', 'c'] (empty items dropped)."""
    return [part.strip() for part in str(text).split(",") if part.strip()]


def comma_ints(text: str) -> tuple[int, ...]:
    """'1,5' -> (1, 5), sorted and without repeats."""
    return tuple(sorted({int(part) for part in comma_list(text)}))


# ------------------------------------------------------------------------------------------- shared groups
# (the model and sampling groups live with the engines: socialsynth.llm.args)


@dataclasses.dataclass
class RangeArgs:
    """Which items: a slice of the (filtered) input and a shard of it (SLURM array tasks)."""

    start_idx: int = flag(0, "first item (index into the filtered list)", names=("-s", "--start_idx"))
    end_idx: int | None = flag(None, "one past the last item", names=("-e", "--end_idx"))
    shard: str | None = flag(None, "I/N: process the I-th of N equal parts (default: "
                             "SLURM_ARRAY_TASK_ID/SLURM_ARRAY_TASK_COUNT)", metavar="I/N")

    def __post_init__(self) -> None:
        check_min(self, "start_idx", 0)
        if self.end_idx is not None and self.end_idx < self.start_idx:
            raise ConfigError("end_idx", f"must not be below --start-idx ({self.start_idx}), got {self.end_idx}")
        if self.shard is not None:
            self.parsed_shard()

    def parsed_shard(self) -> tuple[int, int] | None:
        """(I, N) from --shard, or from the SLURM array environment, or None."""
        from socialsynth.core.io import parse_shard

        try:
            return parse_shard(self.shard)
        except InputError as e:
            raise ConfigError("shard", e.message) from None


# ------------------------------------------------------------------------------------------- introspection


def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def _base_type(tp: Any) -> Any:
    """int | None -> int; list[str] -> list; tuple[int, ...] -> tuple."""
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        return _base_type(args[0]) if len(args) == 1 else str
    return origin or tp


def _is_group(f: dataclasses.Field) -> bool:
    return bool(f.metadata.get("group"))


def iter_fields(cls: type, prefix: tuple[str, ...] = ()):
    """(path, field, type) of every flag field, groups spread; path is the tuple of attribute names."""
    hints = _hints(cls)
    for f in dataclasses.fields(cls):
        if _is_group(f):
            yield from iter_fields(hints[f.name], prefix + (f.name,))
        elif f.init:
            yield prefix + (f.name,), f, hints[f.name]


def long_names(f: dataclasses.Field) -> list[str]:
    """Every long spelling of a field's flag (declared ones plus dashed/underscored twins)."""
    declared = [n for n in f.metadata.get("names", ()) if n.startswith("--")] or ["--" + f.name.replace("_", "-")]
    out: list[str] = []
    for name in declared:
        for twin in (name, "--" + name[2:].replace("_", "-"), "--" + name[2:].replace("-", "_")):
            if twin not in out:
                out.append(twin)
    return out


def flag_name(f: dataclasses.Field) -> str:
    """The name a message uses for a field: its first declared long name, dashed."""
    return "--" + long_names(f)[0][2:].replace("_", "-")


def _key_map(cls: type) -> dict[str, tuple[tuple[str, ...], dataclasses.Field, Any]]:
    """Job-file keys -> field: the field name and every long flag name (dashes read as underscores)."""
    keys = {}
    for path, f, tp in iter_fields(cls):
        for key in [f.name, *(n[2:] for n in long_names(f))]:
            keys[key.replace("-", "_")] = (path, f, tp)
    return keys


# ------------------------------------------------------------------------------------------- values


def coerce(value: Any, f: dataclasses.Field, tp: Any) -> Any:
    """A command-line or job-file value -> the field's type. Raises ValueError with a short reason."""
    if value is None:
        if type(None) not in typing.get_args(tp):  # a job file's `key: null` for a field that needs a value
            raise ValueError("needs a value, got null")
        return None
    convert = f.metadata.get("convert")
    base = _base_type(tp)
    if convert is not None:
        if isinstance(value, str) or not isinstance(value, (list, tuple)):
            return convert(value if isinstance(value, str) else str(value))
        return convert(",".join(map(str, value)))
    if f.metadata.get("append") or base in (list, tuple):
        items = value if isinstance(value, (list, tuple)) else comma_list(value)
        return base(items) if base in (list, tuple) else list(items)
    if base is bool:
        if isinstance(value, bool):
            return value
        if str(value).lower() in ("true", "yes", "1", "on"):
            return True
        if str(value).lower() in ("false", "no", "0", "off"):
            return False
        raise ValueError(f"expected true or false, got {value!r}")
    if base is int and isinstance(value, float) and not value.is_integer():
        raise ValueError(f"expected a whole number, got {value!r}")
    if base in (int, float, str, Path):
        try:
            return base(value)
        except (TypeError, ValueError):
            kind = {int: "a whole number", float: "a number"}.get(base, base.__name__)
            raise ValueError(f"expected {kind}, got {value!r}") from None
    return value


def to_plain(value: Any) -> Any:
    """Config values -> YAML/JSON-safe values (Paths to str, tuples to lists, nested dataclasses to dicts)."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: to_plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, dict):
        return {str(k): to_plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_plain(v) for v in value]
    if isinstance(value, Path):
        return str(value)
    return value


def flat_values(cfg: Any) -> dict[str, Any]:
    """The resolved config as one flat mapping of field names (what ``--print-config`` writes)."""
    return {path[-1]: to_plain(_get(cfg, path)) for path, f, _ in iter_fields(type(cfg)) if f.metadata.get("cli", True)
            or _get(cfg, path) is not None}


def to_yaml(cfg: Any) -> str:
    """The resolved config as YAML that ``--config`` reads back."""
    return yaml.safe_dump(flat_values(cfg), sort_keys=False, allow_unicode=True, width=120)


def _get(cfg: Any, path: tuple[str, ...]) -> Any:
    for name in path:
        cfg = getattr(cfg, name)
    return cfg


# ------------------------------------------------------------------------------------------- the parser


class _Parser(argparse.ArgumentParser):
    """argparse that reports a bad flag in one line (no usage dump) and exits 2. Flags are never abbreviated:
    ``--temp`` meaning ``--temperature`` would change meaning when a ``--template`` flag arrives."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("allow_abbrev", False)
        super().__init__(*args, **kwargs)

    def error(self, message: str) -> typing.NoReturn:
        print(f"{self.prog}: error: {message} (see --help)", file=sys.stderr)
        sys.exit(EXIT_BAD_INPUT)


OneLineParser = _Parser  # for commands that build their own parser (merge)


class HelpFormatter(argparse.RawDescriptionHelpFormatter):
    pass


def _help(f: dataclasses.Field, default: Any) -> str:
    text = f.metadata.get("help", "")
    if default is not None and default is not _MISSING and default != [] and not isinstance(default, bool):
        text = f"{text} (default: {to_plain(default)})" if text else f"default: {to_plain(default)}"
    return text.replace("%", "%%")


def _add_flag(target, f: dataclasses.Field, tp: Any, default: Any) -> None:
    short = [n for n in f.metadata.get("names", ()) if not n.startswith("--")]
    names = short + long_names(f)
    kwargs: dict[str, Any] = {"dest": f.name, "default": argparse.SUPPRESS, "help": _help(f, default)}
    base = _base_type(tp)
    if base is bool and f.metadata.get("convert") is None:
        # True or None (unset: the job decides) get --x/--no-x; False gets a plain switch
        kwargs["action"] = "store_true" if default is False else argparse.BooleanOptionalAction
    else:
        if f.metadata.get("append"):
            kwargs["action"] = "extend" if f.metadata.get("several") else "append"
            if f.metadata.get("several"):
                kwargs["nargs"] = "+"
        kwargs["metavar"] = f.metadata.get("metavar")
        choices = f.metadata.get("choices")
        if choices is not None:
            kwargs["choices"] = choices
            kwargs["type"] = type(choices[0])
    target.add_argument(*names, **kwargs)


def build_parser(cls: type, prog: str | None = None, description: str | None = None,
                 epilog: str = "") -> argparse.ArgumentParser:
    """argparse for a config dataclass: one argument group per shared group, plus --config/--print-config."""
    parser = _Parser(prog=prog, description=description or cls.__doc__, epilog=epilog,
                     formatter_class=HelpFormatter)
    _add_fields(parser, cls, parser)
    jobfile = parser.add_argument_group("job file")
    jobfile.add_argument("--config", metavar="JOB.yaml", default=None,
                         help="read settings from this YAML file (any flag under its long name; flags given on the "
                              "command line override it)")
    jobfile.add_argument("--print-config", action="store_true",
                         help="print the resolved config as YAML (what --config reads) and exit")
    jobfile.add_argument("--preset", metavar="NAME", default=None,
                         help="start from a paper's settings (a job file shipped with socialsynth; --config and "
                              "flags override it); see --list-presets")
    jobfile.add_argument("--list-presets", action="store_true", help="list the presets of this script and exit")
    return parser


def _add_fields(parser: argparse.ArgumentParser, cls: type, target) -> None:
    hints = _hints(cls)
    for f in dataclasses.fields(cls):
        if _is_group(f):
            sub = hints[f.name]
            title = (sub.__doc__ or sub.__name__).strip().split("\n")[0]
            _add_group_fields(parser.add_argument_group(f.name, title), sub, f.default_factory())
        elif f.init and f.metadata.get("cli", True):
            _add_flag(target, f, hints[f.name], _field_default(f))


def _add_group_fields(target, cls: type, instance: Any) -> None:
    hints = _hints(cls)
    for f in dataclasses.fields(cls):
        if f.init and f.metadata.get("cli", True):
            _add_flag(target, f, hints[f.name], getattr(instance, f.name))


def _field_default(f: dataclasses.Field) -> Any:
    if f.default is not _MISSING:
        return f.default
    if f.default_factory is not _MISSING:
        return f.default_factory()
    return None


# ------------------------------------------------------------------------------------------- resolving


def read_job_file(path: str | Path) -> dict[str, Any]:
    """The mapping in a YAML job file; InputError naming the file for anything else."""
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError as e:
        raise InputError(f"the job file is not UTF-8 text (byte {e.start})", path=path) from None
    except OSError as e:
        raise InputError(f"cannot read the job file: {e.strerror or e}", path=path) from None
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        line = mark.line + 1 if mark is not None else None
        raise InputError(f"not valid YAML: {getattr(e, 'problem', None) or e}", path=path, line=line) from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise InputError("a job file must be a mapping of flag names to values", path=path)
    return data


def resolve(cls: type[C], given: dict[str, Any], job_file: dict[str, Any] | None = None,
            job_file_path: str | Path | None = None) -> C:
    """Build and validate a config from job-file values, overridden by command-line values (both by key)."""
    keys = _key_map(cls)
    values: dict[tuple[str, ...], Any] = {}
    for key, value in (job_file or {}).items():
        entry = keys.get(str(key).replace("-", "_"))
        if entry is None:
            raise InputError(f"unknown setting {key!r} (see --help for the names)", path=job_file_path, field=key)
        path, f, tp = entry
        values[path] = _coerced(value, f, tp, origin=job_file_path)
    for name, value in given.items():
        path, f, tp = keys[name]
        values[path] = _coerced(value, f, tp)
    try:
        return _build(cls, values)
    except ConfigError as e:  # name the flag as the user spells it (the field may be called otherwise)
        entry = keys.get(e.name)
        if entry is not None:
            e.field = flag_name(entry[1])
        raise


def _coerced(value: Any, f: dataclasses.Field, tp: Any, origin: str | Path | None = None) -> Any:
    try:
        return coerce(value, f, tp)
    except ValueError as e:
        raise InputError(str(e), path=origin, field=flag_name(f)) from None


def _build(cls: type, values: dict[tuple[str, ...], Any], prefix: tuple[str, ...] = ()) -> Any:
    """Instantiate ``cls`` (groups first) with the given values; __post_init__ validates each level."""
    hints = _hints(cls)
    kwargs: dict[str, Any] = {}
    for f in dataclasses.fields(cls):
        path = prefix + (f.name,)
        if _is_group(f):
            base = f.default_factory()
            sub = {p[len(path):]: v for p, v in values.items() if p[: len(path)] == path}
            kwargs[f.name] = _build_group(hints[f.name], base, sub) if sub else base
        elif path in values:
            kwargs[f.name] = values[path]
    missing = [f for f in dataclasses.fields(cls) if f.init and f.name not in kwargs
               and f.default is _MISSING and f.default_factory is _MISSING]
    if missing:
        raise ConfigError(missing[0].name, "is required")
    return cls(**kwargs)


def _build_group(cls: type, base: Any, values: dict[tuple[str, ...], Any]) -> Any:
    current = {f.name: getattr(base, f.name) for f in dataclasses.fields(cls) if f.init}
    current.update({path[0]: v for path, v in values.items()})
    return cls(**current)


def parse(cls: type[C], argv: Sequence[str] | None = None, *, prog: str | None = None,
          description: str | None = None, epilog: str = "", preset: dict[str, Any] | None = None) -> C:
    """Flags (and ``--config``) -> a validated config; ``--print-config`` prints it and exits 0.

    Bad values raise InputError naming the flag (scripts print one line and exit 2 through ``run_main``).
    ``preset`` values (a mapping from the caller, then the ``--preset NAME`` file of the script's section) sit under
    the job file's and the command line's.
    """
    parser = build_parser(cls, prog, description, epilog)
    ns = vars(parser.parse_args(None if argv is None else [str(a) for a in argv]))
    job_path = ns.pop("config", None)
    print_config = ns.pop("print_config", False)
    section = presets.section_of(prog)
    if ns.pop("list_presets", False):
        sys.stdout.write(presets.listing(section))
        raise SystemExit(0)
    preset_name = ns.pop("preset", None)
    file_values = dict(preset or {})
    if preset_name:
        try:
            file_values.update(presets.load_preset(preset_name, section))
        except LookupError as e:
            raise InputError(str(e.args[0]), field="--preset") from None
    if job_path:
        file_values.update(read_job_file(job_path))
    cfg = resolve(cls, ns, file_values, job_path)
    if print_config:
        sys.stdout.write(to_yaml(cfg))
        raise SystemExit(0)
    return cfg


def save_config(cfg: Any, path: str | Path) -> Path:
    """Write the resolved config as a job file (atomically) so the run can be repeated from it."""
    from socialsynth.core.io import atomic_write_text

    atomic_write_text(path, to_yaml(cfg))
    return Path(path)
