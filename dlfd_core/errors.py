"""The package's own exception types.

Every error a person can cause (a bad file, a photo without a face, an unknown method name, a split that
does not fit its dataset) is raised as a subclass of :class:`DLFDError` with a message that says what to do.
The web app turns these into readable messages; anything else is a bug.
"""

from __future__ import annotations


class DLFDError(Exception):
    """Base class of all errors raised on purpose by ``dlfd_core``."""


class ImageError(DLFDError):
    """An image could not be used: unreadable, truncated, unsupported, or too large."""


class FaceNotFoundError(DLFDError):
    """No face was detected in an image."""


class FaceTooSmallError(DLFDError):
    """A face was detected but is too small to give a usable aligned crop."""


class DataError(DLFDError):
    """A dataset is missing, malformed, or inconsistent (duplicates, empty identities, ...)."""


class SplitError(DataError):
    """A split is invalid for its dataset (overlap, unknown identities, bad sizes)."""


class WeightsError(DLFDError):
    """Model weights are missing, corrupted, or do not fit the architecture."""


class UnknownNameError(DLFDError, ValueError):
    """A name was looked up in a registry that does not contain it."""


class CancelledError(DLFDError):
    """A long-running job was cancelled through its cancellation token."""


class TooFewFacesError(DataError):
    """A face set has fewer usable, different faces than enrolment needs."""


class BusyError(DLFDError):
    """A session already has a job waiting or running; it runs one at a time."""
