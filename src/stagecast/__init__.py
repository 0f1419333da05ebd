"""Stagecast: a self-hosted live-streaming studio."""

__version__ = "0.1.0"
