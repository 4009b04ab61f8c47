"""What every command line of the package shares: one line and exit 2 for bad input, argument types
with their ranges, and the traceback kept for bug reports behind ``SSGAN_FAST_DEBUG=1``."""
from __future__ import annotations

import argparse
import math
import os

DEBUG_ENV = "SSGAN_FAST_DEBUG"


def debug() -> bool:
    """SSGAN_FAST_DEBUG=1: user errors are raised with their traceback instead of the one line."""
    return os.environ.get(DEBUG_ENV, "") not in ("", "0")


class Parser(argparse.ArgumentParser):
    """argparse's parser whose errors are one line on stderr (no usage block), exit 2."""

    def error(self, message: str):
        self.exit(2, f"error: {message} (see {self.prog} --help)\n")

    def fail(self, e: BaseException):
        """A user error found after parsing: re-raised under SSGAN_FAST_DEBUG=1, else one line, exit 2."""
        if debug():
            raise e
        text = " ".join(str(e).strip().split("\n")) or type(e).__name__
        if isinstance(e, KeyError) and text.startswith(("'", '"')):  # KeyError quotes its message
            text = text[1:-1]
        self.exit(2, f"error: {text}\n")


def _number(kind, test, what):
    def parse(text: str):
        try:
            v = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not {'an integer' if kind is int else 'a number'}") from None
        if not (math.isfinite(v) and test(v)):
            raise argparse.ArgumentTypeError(f"{text!r}: must be {what}")
        return v
    parse.__name__ = what  # argparse names the type in its messages
    return parse


count = _number(int, lambda v: v >= 1, ">= 1")  # a count or an interval
natural = _number(int, lambda v: v >= 0, ">= 0")
positive = _number(float, lambda v: v > 0, "> 0")
fraction = _number(float, lambda v: 0 < v <= 1, "in (0, 1]")
unit = _number(float, lambda v: 0 <= v <= 1, "in [0, 1]")
