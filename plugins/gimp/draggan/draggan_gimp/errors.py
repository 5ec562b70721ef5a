"""The one exception the plug-in shows to people: its message is the text GIMP puts in the error dialog."""

from __future__ import annotations


class PluginError(Exception):
    """A failure explained in plain words (what happened and what to do about it)."""


class Cancelled(Exception):
    """The run was stopped on request; not an error for the person who asked."""
