"""Restreaming (simulcast): a live channel's source stream copied to other platforms over RTMP."""
