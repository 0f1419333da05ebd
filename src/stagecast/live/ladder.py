"""ffmpeg command lines: passthrough (copy) or an ABR ladder with keyframes aligned to the source.

Every profile reads FLV on stdin and writes CMAF (fMP4) HLS into one directory per rendition,
each segment written to a temporary name and renamed when complete, so a directory listing
shows only whole segments.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Rung:
    """One transcoded rendition of the ladder."""

    name: str
    height: int
    video_kbps: int
    audio_kbps: int = 128


LADDER = (
    Rung("720p", 720, 2800),
    Rung("480p", 480, 1400),
    Rung("360p", 360, 800),
)


def rungs_below(source_height: int | None) -> list[Rung]:
    """Return the ladder rungs strictly smaller than the source (all of them if unknown)."""
    if not source_height:
        return list(LADDER)
    return [r for r in LADDER if r.height < source_height]


def _input_args(ffmpeg: str) -> list[str]:
    return [
        ffmpeg,
        "-hide_banner",
        "-nostats",
        "-loglevel",
        "warning",
        # The encoder sends metadata and sequence headers first: a short probe is enough and
        # keeps the first segment (and so the live edge) close to real time.
        "-analyzeduration",
        "1500000",
        "-probesize",
        "2000000",
        "-f",
        "flv",
        "-i",
        "pipe:0",
    ]


def _hls_args(segment_seconds: float, out: Path, pattern: str) -> list[str]:
    return [
        "-f",
        "hls",
        "-hls_time",
        f"{segment_seconds:g}",
        "-hls_list_size",
        "10",
        "-hls_segment_type",
        "fmp4",
        "-hls_flags",
        "+temp_file+independent_segments",
        "-hls_fmp4_init_filename",
        "init.mp4",
        "-hls_segment_filename",
        str(out / pattern / "seg-%d.m4s"),
        str(out / pattern / "index.m3u8"),
    ]


def passthrough(ffmpeg: str, out: Path, segment_seconds: float) -> tuple[list[str], list[str]]:
    """Return the command that copies the source into one ``source`` rendition, and its names."""
    cmd = [
        *_input_args(ffmpeg),
        "-map",
        "0:v?",
        "-map",
        "0:a?",
        "-c",
        "copy",
        *_hls_args(segment_seconds, out, "source"),
    ]
    return cmd, ["source"]


def abr(
    ffmpeg: str, out: Path, segment_seconds: float, *, source_height: int | None, has_audio: bool
) -> tuple[list[str], list[str]]:
    """Return the ladder command (source copy plus smaller x264 rungs) and its rendition names.

    Transcoded rungs force a keyframe wherever the source has one, so every rendition's
    segments start at the same instants and players can switch between them.
    """
    rungs = rungs_below(source_height)
    if not rungs:
        return passthrough(ffmpeg, out, segment_seconds)
    labels = "".join(f"[v{i}]" for i in range(len(rungs)))
    scales = ";".join(f"[v{i}]scale=-2:{r.height}[s{i}]" for i, r in enumerate(rungs))
    cmd = [*_input_args(ffmpeg), "-filter_complex", f"[0:v]split={len(rungs)}{labels};{scales}"]
    cmd += ["-map", "0:v"] + (["-map", "0:a"] if has_audio else [])
    for i in range(len(rungs)):
        cmd += ["-map", f"[s{i}]"] + (["-map", "0:a"] if has_audio else [])
    cmd += ["-c:v:0", "copy"]
    for i, rung in enumerate(rungs, start=1):
        cmd += [
            f"-c:v:{i}",
            "libx264",
            f"-preset:v:{i}",
            "veryfast",
            f"-b:v:{i}",
            f"{rung.video_kbps}k",
            f"-maxrate:v:{i}",
            f"{int(rung.video_kbps * 1.1)}k",
            f"-bufsize:v:{i}",
            f"{rung.video_kbps * 2}k",
            f"-pix_fmt:v:{i}",
            "yuv420p",
        ]
    cmd += ["-force_key_frames", "source", "-sc_threshold", "0"]
    if has_audio:
        cmd += ["-c:a", "copy"]
    names = ["source", *(r.name for r in rungs)]
    streams = [
        f"v:{i},a:{i},name:{name}" if has_audio else f"v:{i},name:{name}"
        for i, name in enumerate(names)
    ]
    cmd += ["-var_stream_map", " ".join(streams)]
    cmd += _hls_args(segment_seconds, out, "%v")
    return cmd, names
