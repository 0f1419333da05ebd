"""Live sessions: the state machine, packaging with ffmpeg, segments, playlists, storage."""
