"""issue_titles: the model half of the issue-title system (pipeline stages, predictor, serving bundle)."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("issue-titles")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0.0.0+unknown"

__all__ = ["__version__"]
