"""readersviews: a publication's readers' discussion, letters and statement sign-ons on Discord."""

__version__ = "0.1.0"
