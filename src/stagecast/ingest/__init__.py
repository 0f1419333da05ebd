"""Ingest: the RTMP server and HTTP segment push; both hand media to ``live`` sessions."""
