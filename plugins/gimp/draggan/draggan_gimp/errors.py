"""The exceptions the plug-in shows to people: a PluginError's message is the text GIMP puts in the error dialog."""

from __future__ import annotations


class PluginError(Exception):
    """A failure explained in plain words (what happened and what to do about it)."""


class DaemonLost(PluginError):
    """The daemon stopped answering mid-run: it is gone, so nothing more is asked of it (not even to close)."""


class Cancelled(Exception):
    """The run was stopped on request; not an error for the person who asked."""
