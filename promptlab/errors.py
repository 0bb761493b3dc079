"""One exception type for everything a user can cause.

The CLI prints it as one line and exits non-zero; the GUI shows it in the window.
Anything else escaping is a bug.
"""


class PromptlabError(Exception):
    """A user-facing error: the message alone must say what is wrong and how to fix it."""


class StreamError(PromptlabError):
    """A damaged, truncated or foreign .plab stream; `record` names the first bad record."""

    def __init__(self, message: str, record: int | None = None) -> None:
        super().__init__(message)
        self.record = record


class MissingWeightsError(PromptlabError):
    """Model or metric weights are not on this machine."""


class Cancelled(PromptlabError):
    """A job was cancelled by the user."""
