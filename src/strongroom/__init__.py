"""Strongroom: a secure wallet, payments and settlement API platform."""

__version__ = "0.1.0"
