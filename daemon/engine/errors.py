"""Errors the engine raises for input a person can fix (the message is shown to them as is)."""


class EngineInputError(ValueError):
    """The layer, region, points or image given to the engine cannot be used; the message says why in plain words."""
