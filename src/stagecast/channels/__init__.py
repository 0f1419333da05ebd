"""Channels: who owns them, who moderates them, their stream keys, and who may see them."""
