"""The ``poise`` command: ``main`` parses the command line (``parser``), runs the subcommand (``commands``) and
turns a user-fixable error into one line and exit status 2, Ctrl-C or SIGTERM into 130."""

from __future__ import annotations

import logging
import signal
import sys
import threading

from poise.cli.parser import build_parser
from poise.errors import PoiseError

__all__ = ["build_parser", "main"]


def _terminated(signum, frame):
    raise KeyboardInterrupt  # SIGTERM ends a command as Ctrl-C does: what finished is said and kept


class _Console(logging.Handler):
    """The library's log (``logging.getLogger("poise")``) on stderr, through tqdm so that progress bars stay whole:
    progress lines as they are, warnings prefixed ``poise: warning:``."""

    def emit(self, record: logging.LogRecord) -> None:
        from tqdm import tqdm

        text = record.getMessage()
        tqdm.write(text if record.levelno < logging.WARNING else f"poise: warning: {text}", file=sys.stderr)


def log_to_console() -> None:
    """What a command line wants: poise's own log, info and up, on stderr (one handler per process). A Python
    user of the library chooses their own handlers (``logging.basicConfig(level=logging.INFO)`` shows the
    progress lines; without any, Python prints warnings only)."""
    logger = logging.getLogger("poise")
    if not any(isinstance(h, _Console) for h in logger.handlers):
        logger.addHandler(_Console())
    logger.setLevel(logging.INFO)


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    log_to_console()
    on_main_thread = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGTERM, _terminated) if on_main_thread else None
    try:
        return _run(args)
    finally:
        if on_main_thread:
            signal.signal(signal.SIGTERM, previous)


def _run(args) -> int:
    try:
        return args.func(args)
    except (PoiseError, OSError) as err:  # a user-fixable problem (OSError: FileExistsError, a missing file, ...)
        print(f"poise {args.command}: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"poise {args.command}: interrupted; what finished is saved (a run's last epoch or task): continue "
              f"a run with --resume RUN_DIR, and re-run simulate or a bench to finish it", file=sys.stderr)
        return 130
