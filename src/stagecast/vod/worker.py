"""The VOD worker: claims due jobs, builds and purges VODs, and sweeps for missing ones.

Each process runs ``workers`` claim loops (one on SQLite, whose writers are serialized anyway)
and one sweeper. A loop polls for due jobs every ``poll`` seconds while idle and works without
pause while there are some. On shutdown the loops are cancelled (ffmpeg is killed with them)
and the jobs they held are handed back untried, so another process takes them at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from contextlib import AsyncExitStack
from dataclasses import asdict, dataclass, field

import imageio_ffmpeg

from stagecast.bus import Bus, BusUnavailable
from stagecast.config import Settings
from stagecast.core import Core
from stagecast.db import Database
from stagecast.live.objects import ObjectStorage
from stagecast.live.runtime import Live
from stagecast.live.storage import SegmentStorage
from stagecast.vod import building, jobs, purge
from stagecast.vod.building import BuildError
from stagecast.vod.events import VOD_CHANGED_TOPIC, VOD_TOPIC, VodChanged, VodReady
from stagecast.vod.jobs import Claim, Policy

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class WorkerConfig:
    """How the worker runs (seconds)."""

    workers: int = 1
    poll: float = 2.0
    sweep_every: float = 60.0
    policy: Policy = field(default_factory=Policy)
    ffmpeg: str = "ffmpeg"
    thumbnail_timeout: float = 20.0

    @classmethod
    def from_settings(cls, settings: Settings) -> WorkerConfig:
        """Build the configuration from the ``STAGECAST_VOD_*`` settings."""
        return cls(
            workers=1 if settings.is_sqlite else settings.vod_workers,
            poll=settings.vod_poll_seconds,
            sweep_every=settings.vod_sweep_seconds,
            policy=Policy(
                attempts=settings.vod_job_attempts,
                retry_base=settings.vod_retry_base_seconds,
                retry_cap=settings.vod_retry_cap_seconds,
                lease=settings.vod_job_lease_seconds,
            ),
            ffmpeg=settings.ffmpeg or imageio_ffmpeg.get_ffmpeg_exe(),
            thumbnail_timeout=settings.vod_thumbnail_timeout,
        )


@dataclass
class WorkerStats:
    """Counters of this process's VOD jobs (exported on /metrics)."""

    claimed: int = 0
    built: int = 0
    purged: int = 0
    retried: int = 0
    failed: int = 0
    running: int = 0  # a gauge: jobs this process holds right now

    def snapshot(self) -> dict[str, int]:
        """Return the counters as a dict."""
        return asdict(self)


# Whether any live node still spools files of a session (``live.nodes.Nodes.spooling``).
Spooling = Callable[[int], Awaitable[bool]]


class VodWorker:
    """Claim loops and a sweeper over one database and one media storage."""

    def __init__(
        self,
        db: Database,
        storage: SegmentStorage,
        config: WorkerConfig,
        bus: Bus | None = None,
        spooling: Spooling | None = None,
    ) -> None:
        self.db = db
        self.storage = storage
        # Asked whether a session's files may still be in a node's spool (object storage).
        self.spooling = spooling
        self.config = config
        self.bus = bus
        self.stats = WorkerStats()
        self._stopping = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._held: set[Claim] = set()

    async def run_once(self) -> bool:
        """Claim one due job and run it; return False if there was none."""
        claims = await jobs.claim(self.db, self.config.policy)
        if not claims:
            return False
        held = claims[0]
        self._held.add(held)
        self.stats.claimed += 1
        self.stats.running = len(self._held)
        try:
            if held.kind == "build":
                await self._build(held)
            else:
                await self._purge(held)
        finally:
            self._held.discard(held)
            self.stats.running = len(self._held)
        return True

    async def _build(self, held: Claim) -> None:
        archive = await building.load_archive(self.db, held.vod_id)
        if archive is None:  # deleted meanwhile: nothing to build
            await jobs.succeed(self.db, held)
            return
        spooling, lost = self.spooling, None
        if spooling is not None and held.attempt >= 2:
            # The first try waits for the spools anyway; after it, files that no live node
            # still spools will never arrive (their node died): build without them.

            async def lost_for_good() -> bool:
                return not await spooling(archive.session_id)

            lost = lost_for_good
        try:
            built = await building.build(
                self.storage,
                archive,
                ffmpeg=self.config.ffmpeg,
                thumbnail_timeout=self.config.thumbnail_timeout,
                lost=lost,
            )
        except BuildError as exc:
            await self._failed(held, exc.reason, permanent=exc.permanent)
        except Exception as exc:  # a bug or the disk: bounded retries all the same
            log.exception("vod %d: build crashed", held.vod_id)
            await self._failed(held, f"internal error ({type(exc).__name__})")
        else:
            done = await jobs.succeed(
                self.db,
                held,
                duration=built.duration,
                byte_size=built.byte_size,
                thumbnail_path=built.thumbnail_path,
            )
            log.info(
                "vod %d ready (%.1f s, %d bytes)", held.vod_id, built.duration, built.byte_size
            )
            if done:
                self.stats.built += 1
                await self._announce(archive, built)

    async def _announce(self, archive: building.Archive, built: building.Built) -> None:
        """Tell the studio and webhooks (topic ``vod.<channel_id>``) and every process's
        playback (``vods.changed``: a VOD looked up before it was ready plays at once), after
        the commit."""
        if self.bus is None:
            return
        ready = VodReady(archive.vod_id, archive.session_id, archive.channel_id, built.duration)
        changed = VodChanged(archive.vod_id, "ready")
        messages = [
            (VOD_TOPIC.name(archive.channel_id), VOD_TOPIC.encode(ready)),
            (VOD_CHANGED_TOPIC.name(), VOD_CHANGED_TOPIC.encode(changed)),
        ]
        try:
            await self.bus.publish_many(messages)
        except BusUnavailable:  # the VOD is ready all the same; the studio sees it on reload
            log.warning("vod %d: could not announce it on the bus", archive.vod_id)

    async def _failed(self, held: Claim, reason: str, *, permanent: bool = False) -> None:
        state = await jobs.fail(self.db, held, reason, self.config.policy, permanent=permanent)
        if state == "failed":
            self.stats.failed += 1
        elif state != "lost":
            self.stats.retried += 1
        log.warning(
            "vod %d: %s job attempt %d failed (%s): %s",
            held.vod_id,
            held.kind,
            held.attempt,
            state,
            reason,
        )

    async def _purge(self, held: Claim) -> None:
        found = await purge.target(self.db, held.vod_id)
        if found is None:  # not deleted (or already purged): nothing to do
            await jobs.succeed(self.db, held)
            return
        channel_id, session_id = found
        try:
            await self.storage.delete_tree(purge.media_prefix(channel_id, session_id))
        except Exception as exc:
            await self._failed(held, f"cannot delete the media: {type(exc).__name__}")
            return
        await purge.finish(self.db, held, session_id)
        self.stats.purged += 1

    async def sweep(self, after_id: int = 0) -> int:
        """Create the missing VODs of every ended session with an id above ``after_id``."""
        created = 0
        while not self._stopping.is_set():
            count, last = await jobs.sweep_batch(self.db, after_id)
            created += count
            if last is None:
                break
            after_id = last
        return created

    def start(self) -> None:
        """Start the claim loops and the sweeper."""
        self._tasks = [asyncio.create_task(self._loop()) for _ in range(self.config.workers)]
        self._tasks.append(asyncio.create_task(self._sweeper()))

    async def stop(self) -> None:
        """Stop every loop, killing work in progress, and hand back the jobs they held."""
        self._stopping.set()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks = []
        for held in list(self._held):
            with contextlib.suppress(Exception):
                await jobs.release(self.db, held)
        self._held.clear()

    async def _pause(self, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(seconds):
                await self._stopping.wait()

    async def _loop(self) -> None:
        while not self._stopping.is_set():
            try:
                worked = await self.run_once()
            except Exception:  # the database is away: keep polling, it recovers by itself
                log.warning("vod worker: claiming failed", exc_info=True)
                worked = False
            if not worked:
                await self._pause(self.config.poll)

    async def _sweeper(self) -> None:
        floor = 0  # the first pass after start looks at every session once
        while not self._stopping.is_set():
            try:
                next_floor = await jobs.sweep_floor(self.db)
                created = await self.sweep(floor)
                floor = next_floor
                if created:
                    log.warning("vod sweep: created %d missing VOD(s)", created)
            except Exception:
                log.warning("vod sweep failed", exc_info=True)
            await self._pause(self.config.sweep_every)


def start_vod(core: Core, live: Live, stack: AsyncExitStack) -> VodWorker:
    """Make a VOD whenever a session ends, and run the worker until shutdown.

    Call it before ``start_live``: the end hook must be in place before the manager's first
    sweep ends sessions a crash left behind.
    """
    live.hooks.on_ended.append(jobs.on_session_ended)
    config = WorkerConfig.from_settings(core.settings)
    spooling = live.manager.nodes.spooling if isinstance(live.storage, ObjectStorage) else None
    worker = VodWorker(core.db, live.storage, config, core.bus, spooling)
    worker.start()
    stack.push_async_callback(worker.stop)
    return worker
