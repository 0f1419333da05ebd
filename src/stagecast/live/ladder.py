"""ffmpeg command lines: passthrough (copy) or an ABR ladder with keyframes aligned to the source.

Every profile reads FLV on stdin and writes each rendition as fragmented MP4 (CMAF) to a pipe
of its own, a fragment about every frame; the packager reads the pipes as ffmpeg writes them
and ``live.parts`` cuts the fragments into parts and segments.
"""

from __future__ import annotations

from dataclasses import dataclass


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


# ffmpeg flushes a fragment once a track holds this much since the last one (microseconds):
# about one video frame per fragment at 25 to 30 fps, two at 50 to 60, which is what parts are
# cut from (``live.parts``). Smaller would only add moof boxes; larger would coarsen parts.
FRAGMENT_MICROSECONDS = 30_000
FIRST_FD = 3  # rendition i writes to file descriptor FIRST_FD + i


def _fmp4_args(fd: int) -> list[str]:
    """Fragmented MP4 on pipe ``fd``: ftyp+moov first, then a moof+mdat about every frame."""
    return [
        "-f",
        "mp4",
        "-movflags",
        "+empty_moov+default_base_moof+frag_keyframe",
        "-frag_duration",
        str(FRAGMENT_MICROSECONDS),
        "-flush_packets",
        "1",
        f"pipe:{fd}",
    ]


def passthrough(ffmpeg: str) -> tuple[list[str], list[str]]:
    """Return the command that copies the source into one ``source`` rendition, and its names.

    The rendition comes out as fragmented MP4 on file descriptor ``FIRST_FD``.
    """
    cmd = [*_input_args(ffmpeg), "-map", "0:v?", "-map", "0:a?", "-c", "copy", *_fmp4_args(3)]
    return cmd, ["source"]


def abr(ffmpeg: str, *, source_height: int | None, has_audio: bool) -> tuple[list[str], list[str]]:
    """Return the ladder command (source copy plus smaller x264 rungs) and its rendition names.

    Rendition i comes out as fragmented MP4 on file descriptor ``FIRST_FD + i``. Transcoded
    rungs force a keyframe wherever the source has one, so every rendition's segments start
    at the same instants and players can switch between them.
    """
    rungs = rungs_below(source_height)
    if not rungs:
        return passthrough(ffmpeg)
    audio = ["-map", "0:a", "-c:a", "copy"] if has_audio else []
    labels = "".join(f"[v{i}]" for i in range(len(rungs)))
    scales = ";".join(f"[v{i}]scale=-2:{r.height}[s{i}]" for i, r in enumerate(rungs))
    cmd = [*_input_args(ffmpeg), "-filter_complex", f"[0:v]split={len(rungs)}{labels};{scales}"]
    cmd += ["-map", "0:v", "-c:v", "copy", *audio, *_fmp4_args(FIRST_FD)]
    for i, rung in enumerate(rungs):
        cmd += [
            "-map",
            f"[s{i}]",
            "-c:v",
            "libx264",
            "-preset",
            "veryfast",
            "-b:v",
            f"{rung.video_kbps}k",
            "-maxrate",
            f"{int(rung.video_kbps * 1.1)}k",
            "-bufsize",
            f"{rung.video_kbps * 2}k",
            "-pix_fmt",
            "yuv420p",
            "-force_key_frames",
            "source",
            "-sc_threshold",
            "0",
            *audio,
            *_fmp4_args(FIRST_FD + 1 + i),
        ]
    return cmd, ["source", *(r.name for r in rungs)]
