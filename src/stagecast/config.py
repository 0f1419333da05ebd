"""Settings, read once at the edge (the CLI or a test) and passed down.

Every setting comes from an environment variable with the ``STAGECAST_`` prefix; the README
lists them all with their defaults. Nothing here connects to anything or runs at import time.
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

SECRET_KEY_FILE = "secret_key"


class Settings(BaseSettings):
    """All runtime configuration of one Stagecast process."""

    model_config = SettingsConfigDict(env_prefix="STAGECAST_", extra="ignore", frozen=False)

    # Where things live.
    database_url: str | None = None
    data_dir: Path = Path("data")
    redis_url: str | None = None
    redis_prefix: str = "stagecast"
    secret_key: str | None = None

    # Network.
    host: str = "127.0.0.1"
    port: int = Field(default=8000, ge=0, le=65535)
    rtmp_host: str = "0.0.0.0"  # noqa: S104 - encoders on the LAN must reach the ingest port
    rtmp_port: int = Field(default=1935, ge=0, le=65535)
    # RTMP slots: per source address (an IPv6 /64 is one), and for peers not yet publishing.
    rtmp_max_connections_per_address: int = Field(default=16, ge=1)
    rtmp_max_pending_connections: int = Field(default=64, ge=1)
    public_url: str | None = None
    # Seconds a client may take from its first byte to the end of its request headers, and
    # an idle connection is kept between two requests.
    http_header_timeout: float = Field(default=10.0, gt=0, le=300)
    http_keepalive_timeout: int = Field(default=5, ge=1, le=300)

    # Database layer (seconds).
    db_attempt_timeout: float = Field(default=2.0, gt=0)
    db_lock_timeout: float = Field(default=1.0, gt=0)
    db_deadline: float = Field(default=5.0, gt=0)
    db_max_attempts: int = Field(default=4, ge=1, le=20)
    db_backoff_base: float = Field(default=0.05, gt=0)
    db_backoff_cap: float = Field(default=1.0, gt=0)
    db_slow_query: float = Field(default=0.5, gt=0)
    db_pool_size: int = Field(default=10, ge=1)
    sqlite_busy_timeout: float = Field(default=0.5, ge=0)

    # Accounts.
    registration: Literal["open", "invite", "closed"] = "invite"
    admin_username: str | None = None
    admin_password: str | None = None
    login_attempts: int = Field(default=10, ge=1)
    login_window_seconds: float = Field(default=300.0, gt=0)
    session_days: float = Field(default=14.0, gt=0)
    channels_per_user: int = Field(default=20, ge=1)  # admins are not limited
    cookie_secure: Literal["auto", "always", "never"] = "auto"

    # Live media.
    node_name: str | None = None
    # Set by ``stagecast serve --workers N`` for each worker it starts (not for deployments):
    # the worker's index (0 holds ingest and the live edge) and the primary's Unix socket.
    worker_index: int | None = None
    primary_socket: Path | None = None
    ffmpeg: str | None = None
    reconnect_grace_seconds: float = Field(default=30.0, ge=0)
    segment_seconds: float = Field(default=2.0, ge=0.5, le=10)
    live_window_segments: int = Field(default=6, ge=3)
    # Bytes of live-window segments each process serves from memory (0: always from storage).
    hot_media_bytes: int = Field(default=256 * 1024 * 1024, ge=0)

    # Object storage (unset: media on the local disk under data_dir/media). Public names.
    storage_url: str | None = None  # s3://BUCKET/PREFIX
    s3_endpoint_url: str | None = None  # unset: AWS
    s3_region: str | None = None
    s3_access_key_id: str | None = None
    s3_secret_access_key: str | None = None
    s3_path_style: bool = False
    # Bytes that may wait on this disk for the bucket, and seconds one request may take.
    storage_spool_bytes: int = Field(default=2 * 1024**3, ge=1024 * 1024)
    storage_timeout: float = Field(default=10.0, gt=0, le=300)
    # Where VOD media is fetched from (a CDN, or the bucket's public endpoint); unset: here.
    media_base_url: str | None = None

    # Chat.
    chat_anonymous_read: bool = True
    chat_max_length: int = Field(default=500, ge=1, le=2000)
    chat_max_frame_bytes: int = Field(default=8192, ge=1024, le=1_048_576)
    chat_rate_limit: int = Field(default=20, ge=1)
    chat_rate_window_seconds: float = Field(default=30.0, gt=0)
    chat_send_queue: int = Field(default=256, ge=4)
    chat_heartbeat_seconds: float = Field(default=25.0, gt=0)
    chat_resume_limit: int = Field(default=500, ge=1, le=10_000)
    chat_reorder_wait_seconds: float = Field(default=0.2, gt=0)

    # Recordings and the VOD library (seconds).
    vod_workers: int = Field(default=2, ge=1, le=16)
    vod_poll_seconds: float = Field(default=2.0, gt=0)
    vod_sweep_seconds: float = Field(default=60.0, gt=0)
    vod_job_attempts: int = Field(default=5, ge=1, le=20)
    vod_retry_base_seconds: float = Field(default=10.0, ge=0)
    vod_retry_cap_seconds: float = Field(default=600.0, ge=0)
    vod_job_lease_seconds: float = Field(default=600.0, gt=0)
    vod_purge_delay_seconds: float = Field(default=3600.0, ge=0)
    vod_thumbnail_timeout: float = Field(default=20.0, gt=0)

    # The studio: live metrics, feeds, viewer counts, webhooks (seconds unless named otherwise).
    metrics_token: str | None = None
    metrics_window_seconds: float = Field(default=30.0, ge=1, le=600)
    metrics_tick_seconds: float = Field(default=1.0, gt=0, le=10)
    metrics_history_seconds: float = Field(default=10.0, gt=0, le=600)
    metrics_feed_heartbeat_seconds: float = Field(default=15.0, gt=0, le=300)
    metrics_feed_channel_limit: int = Field(default=16, ge=1)
    metrics_feed_process_limit: int = Field(default=256, ge=1)
    metrics_feed_account_limit: int = Field(default=32, ge=1)
    viewer_heartbeat_seconds: float = Field(default=5.0, gt=0, le=300)
    viewer_heartbeat_limit: int = Field(default=120, ge=1)
    viewer_feed_channel_limit: int = Field(default=2000, ge=1)
    viewer_feed_process_limit: int = Field(default=10000, ge=1)
    viewer_feed_address_limit: int = Field(default=32, ge=1)
    webhook_timeout_seconds: float = Field(default=5.0, gt=0, le=60)
    webhook_max_attempts: int = Field(default=8, ge=1, le=30)
    webhook_retry_base_seconds: float = Field(default=10.0, gt=0)
    webhook_retry_cap_seconds: float = Field(default=3600.0, gt=0)
    webhook_poll_seconds: float = Field(default=2.0, gt=0)
    webhook_allow_private: bool = False

    # Logging.
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    log_format: Literal["text", "json"] = "text"

    @field_validator("storage_url")
    @classmethod
    def _bucket_url(cls, value: str | None) -> str | None:
        if value is None or value == "":
            return None
        if not value.startswith("s3://") or len(value) <= 5 or value[5] == "/":
            raise ValueError("must look like s3://BUCKET/PREFIX")
        return value

    @field_validator("s3_endpoint_url", "media_base_url")
    @classmethod
    def _endpoint(cls, value: str | None) -> str | None:
        if value is None or value == "":
            return None
        if not value.startswith(("http://", "https://")):
            raise ValueError("must be an http:// or https:// URL")
        return value.rstrip("/")

    @field_validator("data_dir")
    @classmethod
    def _absolute(cls, value: Path) -> Path:
        return value.expanduser().resolve()

    @property
    def resolved_database_url(self) -> str:
        """Return the configured database URL, or the embedded SQLite file under data_dir."""
        if self.database_url:
            return normalise_database_url(self.database_url)
        return f"sqlite+aiosqlite:///{self.data_dir / 'stagecast.db'}"

    @property
    def is_sqlite(self) -> bool:
        """Tell whether the database is SQLite (the embedded default)."""
        return self.resolved_database_url.startswith("sqlite")


def normalise_database_url(url: str) -> str:
    """Return ``url`` with the async driver named, so plain ``postgresql://`` URLs work too."""
    for plain, driver in (
        ("postgres://", "postgresql+asyncpg://"),
        ("postgresql://", "postgresql+asyncpg://"),
        ("sqlite://", "sqlite+aiosqlite://"),
    ):
        if url.startswith(plain):
            return driver + url[len(plain) :]
    return url


def ensure_secret_key(settings: Settings) -> Settings:
    """Fill ``settings.secret_key`` from the data directory, generating and saving it once.

    The key signs cursors and playback tokens, so it must survive restarts; it is written with
    mode 0600 next to the database.
    """
    if settings.secret_key:
        return settings
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    path = settings.data_dir / SECRET_KEY_FILE
    if not path.exists():
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(secrets.token_urlsafe(48))
    settings.secret_key = path.read_text().strip()
    return settings
