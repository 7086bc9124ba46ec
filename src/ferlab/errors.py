"""Exceptions that ferlab raises for bad input; each message names the problem and the fix."""

from __future__ import annotations

import difflib
from collections.abc import Iterable


class FerlabError(Exception):
    """Base class of every error ferlab raises on purpose."""


class DataError(FerlabError, ValueError):
    """A data file or folder is missing, empty or malformed."""


class ConfigError(FerlabError, ValueError):
    """A configuration key or value is invalid."""


class ModelError(FerlabError, ValueError):
    """A model name, checkpoint or weights file cannot be used."""


def suggest(name: str, choices: Iterable[str]) -> str:
    """Return ' Did you mean 'x'?' for the closest choice, or '' when none is close."""
    close = difflib.get_close_matches(name, list(choices), n=1, cutoff=0.6)
    return f" Did you mean '{close[0]}'?" if close else ""


def unknown_choice(kind: str, name: str, choices: Iterable[str]) -> str:
    """Build the message for an unknown name: what was given, the closest match, and all valid names."""
    choices = sorted(choices)
    return f"unknown {kind} '{name}'.{suggest(name, choices)} Choose one of: {', '.join(choices)}."
