"""The error types of dlgm: each says what is wrong and what is allowed."""


class DLGMError(Exception):
    """Base class of every error dlgm raises on purpose."""


class ConfigError(DLGMError, ValueError):
    """A model or training setting is out of range; the message gives the allowed range."""


class ShapeError(DLGMError, ValueError):
    """An input tensor has the wrong shape, dtype or values (e.g. NaN)."""


class CheckpointError(DLGMError):
    """A checkpoint cannot be read: not safetensors, truncated, malformed or mismatched."""


class TrainingError(DLGMError):
    """Training cannot go on (e.g. the loss stays non-finite after every recovery)."""
