"""Recordings and the VOD library: session end → durable job → VOD, library pages, playback."""
