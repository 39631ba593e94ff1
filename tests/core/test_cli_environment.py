"""run_main and the environment: an OSError the environment caused (a place that cannot be written, a full disk)
is one line naming the path and what to do (exit 2; a full disk exit 1 with the resume hint); any other OSError
keeps its traceback. Secrets (API keys, URL passwords) are masked in whatever run_main and the log print, and the
recorded command line carries no credentials."""

from __future__ import annotations

import errno
import logging
import sys

import pytest

from socialsynth.core import provenance
from socialsynth.core.cli import run_main, setup_logging
from socialsynth.core.provenance import command_line, mask_secrets, redact, redact_command, redact_url

KEY = "sk-live-0123456789abcdefXYZ"


@pytest.fixture(autouse=True)
def no_secrets(monkeypatch):
    monkeypatch.setattr(provenance, "_secrets", set())


def raising(error: BaseException):
    def main() -> int:
        raise error

    return main


@pytest.mark.parametrize(
    ("code", "expect", "exit_code"),
    [
        (errno.EACCES, "permission denied", 2),
        (errno.EPERM, "not permitted", 2),
        (errno.EROFS, "read-only file system", 2),
        (errno.ENOTDIR, "a file is in the way", 2),
        (errno.EEXIST, "exists and is not a folder", 2),
        (errno.EISDIR, "is a folder where a file is needed", 2),
        (errno.ENOSPC, "free space and rerun the same command to resume", 1),
        (errno.EDQUOT, "free space and rerun the same command to resume", 1),
    ],
)
def test_environment_errors_are_one_line_naming_the_path(code, expect, exit_code, capsys):
    error = OSError(code, "as the system says", "/data/out/x.jsonl")
    assert run_main(raising(error)) == exit_code
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert err.startswith("error: /data/out/x.jsonl: ") and expect in err


def test_a_write_without_a_filename_is_named_by_its_open_file(tmp_path, capsys):
    target = tmp_path / "records.jsonl"

    def main() -> int:
        with open(target, "w", encoding="utf-8") as handle:  # noqa: F841 (found in the frame)
            raise OSError(errno.ENOSPC, "No space left on device")

    assert run_main(main) == 1
    err = capsys.readouterr().err.strip()
    assert err == f"error: {target}: no space left on the device; free space and rerun the same command to resume"


def test_other_os_errors_keep_their_traceback(capsys):
    assert run_main(raising(FileNotFoundError(errno.ENOENT, "No such file", "/x"))) == 1
    assert "Traceback" in capsys.readouterr().err


def test_secrets_are_masked_in_run_main_and_in_log_lines(capsys, caplog):
    provenance.register_secret(KEY)
    assert run_main(raising(RuntimeError(f"the server said: bad key {KEY}"))) == 1
    err = capsys.readouterr().err
    assert "Traceback" in err and KEY not in err and "bad key ***" in err
    setup_logging()
    logging.getLogger("socialsynth.test").warning("echo %s and %s", KEY, KEY[:10])
    logged = caplog.text + capsys.readouterr().err  # (under pytest the root's handler is the capturing one)
    assert KEY not in logged and KEY[:10] not in logged and "echo *** and ***" in logged


def test_mask_secrets_hides_whole_and_truncated_keys():
    text = f"key {KEY}; prefix {KEY[:9]}...; tail ...{KEY[-8:]}; short {KEY[:5]}"
    assert mask_secrets(text, [KEY]) == "key ***; prefix ***...; tail ...***; short sk-li"
    assert mask_secrets("EMPTY key", ["EMPTY"]) == "EMPTY key"  # too short to be a secret
    assert mask_secrets("nothing here", []) == "nothing here"


def test_redaction_of_urls_commands_and_values(monkeypatch):
    assert redact_url("http://u:p@host:8000/v1") == "http://***@host:8000/v1"
    assert redact_url("https://token@api.example.com/v1?x=1") == "https://***@api.example.com/v1?x=1"
    assert redact_url("http://host/v1") == "http://host/v1" and redact_url("me@example.com") == "me@example.com"
    command = redact_command(["x.py", "--api-base", "http://u:p@w@h/v1", "--api-key", "sk-1", "--hf-token=abc",
                              "--api-key-env", "MY_KEY", "--max-new-tokens", "6"])
    assert command == ("x.py --api-base http://***@h/v1 --api-key *** --hf-token=*** --api-key-env MY_KEY "
                       "--max-new-tokens 6")
    assert redact({"a": ["http://u:p@h/v1", 3], "b": None}) == {"a": ["http://***@h/v1", 3], "b": None}
    monkeypatch.setattr(sys, "argv", ["/abs/generate_synthetic_data.py", "--api-base=http://u:pw@h/v1"])
    assert command_line() == "generate_synthetic_data.py --api-base=http://***@h/v1"


def test_a_full_disk_is_reported_even_when_the_cleanup_fails_after_it(tmp_path, capsys):
    """A job's `finally` that reads the half-written output (and finds a torn line) must not hide the full disk."""
    from socialsynth.core.errors import InputError

    def main() -> int:
        try:
            raise OSError(errno.ENOSPC, "No space left on device", str(tmp_path / "out.jsonl"))
        finally:
            raise InputError("invalid JSON", path=tmp_path / "out.jsonl", line=4)

    assert run_main(main) == 1
    err = capsys.readouterr().err.strip()
    assert err == f"error: {tmp_path / 'out.jsonl'}: no space left on the device; free space and rerun the same " \
                  "command to resume"


def test_well_known_key_variables_are_masked_without_being_registered(monkeypatch, capsys):
    monkeypatch.setenv("HF_TOKEN", "hf_abcdefghijklmnop")
    assert run_main(raising(RuntimeError("token hf_abcdefghijklmnop refused"))) == 1
    assert "hf_abcdefghijklmnop" not in capsys.readouterr().err
