"""Secrets written nowhere: a storage URL's password is moved off the command line into the environment before
Hydra records the command (its saved overrides, config and multirun.yaml, submitit's pickles, the launcher's log
lines), and every URL sweeper shows or stores is masked (user:***@host). libpq's PGPASSWORD and ~/.pgpass, or a
`${oc.env:VAR}` in study.storage, keep it off the command line in the first place (README, Scaling out)."""
from __future__ import annotations

import logging
import os
import re
import shlex

# scheme://user:password@ ; a password may hold anything but '@' (RFC 3986 wants it percent-encoded) and blanks.
URL_PASSWORD = re.compile(r"(\b[a-zA-Z][\w+.-]*://[^:/@\s'\"]*:)([^@\s'\"]+)(@)")
ENV = "SWEEPER_STORAGE_PASSWORD"  # where a password given in study.storage on the command line goes
STORAGE_KEYS = ("study.storage=", "+study.storage=", "++study.storage=")


def mask(text: str) -> str:
    """`text` with every URL's password shown as ***."""
    return URL_PASSWORD.sub(r"\1***\3", text)


def move_passwords(argv: list[str], environ=os.environ) -> list[str]:
    """argv with a password in `study.storage=URL` replaced by `${oc.env:SWEEPER_STORAGE_PASSWORD}` (a second,
    other password by ..._2, ...), each put in `environ`, which the workers a launcher starts inherit. Hydra then
    resolves the same URL, and records only the interpolation."""
    names: dict[str, str] = {}

    def move(match: re.Match) -> str:
        password = match.group(2)
        if password.startswith("${"):
            return match.group(0)  # already an interpolation
        if password not in names:
            names[password] = ENV if not names else f"{ENV}_{len(names) + 1}"
            environ[names[password]] = password
        return f"{match.group(1)}${{oc.env:{names[password]}}}{match.group(3)}"

    return [URL_PASSWORD.sub(move, a) if a.startswith(STORAGE_KEYS) else a for a in argv]


def shown_command(argv: list[str], environ=os.environ) -> str:
    """The command line as the user typed it (passwords moved back in), then masked: for a resume line."""
    moved = re.compile(r"\$\{oc\.env:(" + ENV + r"(?:_\d+)?)\}")
    return mask(shlex.join(moved.sub(lambda m: environ.get(m.group(1), m.group(0)), a) for a in argv))


class MaskFilter(logging.Filter):
    """Masks URL passwords in every record a handler writes (the log file and the console): the last guard for a
    message that names a resolved storage URL."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if URL_PASSWORD.search(message):
            record.msg, record.args = mask(message), ()
        if record.exc_info and not record.exc_text:
            record.exc_text = mask(logging.Formatter().formatException(record.exc_info))
        return True


def mask_logs() -> None:
    """Put MaskFilter on every handler of the root logger (those Hydra's job logging made), once."""
    for handler in logging.getLogger().handlers:
        if not any(isinstance(f, MaskFilter) for f in handler.filters):
            handler.addFilter(MaskFilter())
