r"""The library's errors: every bad-input error is an :class:`RSIError`.

:class:`RSIError` is a :class:`ValueError`, and each subclass also derives from the built-in
type that code caught before it existed (an unknown channel is still an :class:`IndexError`,
a missing file still a :class:`FileNotFoundError`), so ``except ValueError`` / ``except
IndexError`` keep working. The ``rsi`` command catches :class:`RSIError` alone and prints its
one-line message with exit status 2; anything else is a bug and shows its traceback.

=============================  ================================================================
:class:`RSIError`              bad input of any kind (a ``ValueError``)
:class:`UnknownNameError`      an unknown block, node, model, transform, source, variant, ...
                               name; the message lists the valid ones (also a ``KeyError``)
:class:`OutOfRangeError`       an index out of range (also an ``IndexError``)
:class:`ChannelError`          a channel index out of range (an ``OutOfRangeError``)
:class:`InputTypeError`        an argument of the wrong type (also a ``TypeError``)
:class:`ShapeError`            a tensor or image batch of the wrong shape
:class:`ConfigError`           a configuration value out of range (tolerance, steps, seeds, ...)
:class:`DataError`             a data set or folder that cannot be used
:class:`MissingFileError`      a file or folder that does not exist (also ``FileNotFoundError``)
:class:`PathError`             an output path that cannot be written (also an ``OSError``)
:class:`WeightsError`          a weights file that does not fit the model
=============================  ================================================================

Raise the most specific one, with a message that names what is valid::

    raise UnknownNameError(f"unknown block {name!r}; valid: {', '.join(valid)}")
"""

from __future__ import annotations

__all__ = [
    "RSIError",
    "UnknownNameError",
    "OutOfRangeError",
    "ChannelError",
    "InputTypeError",
    "ShapeError",
    "ConfigError",
    "DataError",
    "MissingFileError",
    "PathError",
    "WeightsError",
]


class RSIError(ValueError):
    """Bad input to the library: an argument, a file, a configuration. The message is one
    sentence that says what was wrong and what is valid."""


class UnknownNameError(RSIError, KeyError):
    """An unknown name (block, node, model, transform, source, variant, ...) or key. Also a
    ``KeyError`` (a lookup that failed), printed as its sentence, not quoted as ``KeyError``
    prints its argument."""

    __str__ = BaseException.__str__


class OutOfRangeError(RSIError, IndexError):
    """An index outside its range (a grid row, a seed position)."""


class ChannelError(OutOfRangeError):
    """A channel index outside the block's channels."""


class InputTypeError(RSIError, TypeError):
    """An argument of the wrong type (a list where a tensor is needed, a float channel)."""


class ShapeError(RSIError):
    """A tensor or batch of images whose shape does not fit (``[N, 3, H, W]`` expected, ...)."""


class ConfigError(RSIError):
    """A configuration value out of its range (tolerance <= 1, steps < 1, an empty seed list)."""


class DataError(RSIError):
    """A data set or image folder that cannot be used (no images, labels that do not fit)."""


class MissingFileError(RSIError, FileNotFoundError):
    """A file or folder that does not exist."""


class PathError(RSIError, OSError):
    """An output path that cannot be used (a file where a folder is needed, not writable)."""


class WeightsError(RSIError):
    """A weights file or checkpoint that does not fit the model."""
