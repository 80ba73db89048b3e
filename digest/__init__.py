"""digest: an organisation's new posts, collected from its feeds and emailed as one issue."""

__version__ = "0.4.0"
