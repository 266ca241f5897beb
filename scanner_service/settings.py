"""The station's one settings object, read from ``SCANSTATION_*`` environment variables."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    """Everything a role of the station needs to know; built by :func:`build_settings`."""

    model_config = SettingsConfigDict(env_prefix="SCANSTATION_", extra="ignore")

    data: Path = Field(default=Path("data"), description="Data folder: spool, archive, quarantine, catalogue")
    inbox: Path = Field(default=Path("inbox"), description="Folder the scanner writes into")
    database_url: str | None = Field(
        default=None, description="SQLAlchemy URL of the catalogue; SQLite under the data folder if unset"
    )
    redis_url: str | None = Field(
        default=None,
        description="Redis URL; unset means the station's own redis-server under the data folder",
    )
    host: str = "127.0.0.1"
    port: int = 8000
    workers: int = 2
    quiet_seconds: float = Field(default=10.0, description="A batch with no change for this long is complete")
    poll_seconds: float = Field(default=1.0, description="How often the watcher looks at the inbox")
    filing_retry_seconds: float = Field(
        default=60.0,
        description="A filing stopped by a full or read-only archive or a busy catalogue is tried again after this",
    )
    max_pixels: int = Field(
        default=150_000_000, description="Largest page image accepted, in pixels (decompression-bomb guard)"
    )
    render_dpi: int = Field(default=300, description="Resolution for PDF pages that must be rendered")
    page_timeout: int = Field(default=600, description="Seconds one page job may run before it is stopped")
    page_retries: int = Field(default=3, description="Retries of a page job after an error that can pass")
    retry_backoff: float = Field(default=5.0, description="Seconds before the first retry; later ones wait longer")
    job_monitoring_interval: int = Field(
        default=10,
        description="Seconds between worker heartbeats; a dead worker's page is re-run after ~60 s more",
    )
    ocr_engine: str = Field(default="rapidocr", description="OCR engine: rapidocr (PP-OCR) or tesseract")
    ocr_runtime: str = Field(
        default="openvino",
        description="What runs PP-OCR's models (rapidocr engine): openvino or onnxruntime; the same model files",
    )
    ocr_languages: str = Field(default="chi_sim+eng", description="Tesseract's languages (tesseract engine only)")
    min_confidence: float = Field(default=60.0, description="Mean OCR confidence below which a page is flagged")
    jpeg_quality: int = 80
    session_hours: float = Field(
        default=12.0, gt=0, description="How long a person's login lasts (not extended by use)"
    )
    lockout_failures: int = Field(
        default=5, ge=1, description="Failed logins in a row after which a person's account is locked"
    )
    lockout_minutes: float = Field(default=15.0, gt=0, description="How long a locked account stays locked")
    password_time_cost: int = Field(
        default=3,
        ge=1,
        description="argon2id passes per password hash (argon2-cffi's default); a login re-hashes "
        "a password stored with other costs",
    )
    password_memory_kib: int = Field(
        default=65536, ge=8192, description="argon2id memory per password hash, KiB (argon2-cffi's default, 64 MiB)"
    )

    @property
    def redis_dir(self) -> Path:
        return self.data / "redis"

    @property
    def redis_socket(self) -> Path:
        return self.redis_dir / "redis.sock"

    @property
    def effective_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite:///{(self.data / 'catalogue.sqlite3').resolve()}"

    @property
    def redis_url_file(self) -> Path:
        """Where ``scanstation up`` writes the URL of its own redis-server for the other commands."""
        return self.redis_dir / "url"

    @property
    def effective_redis_url(self) -> str:
        if self.redis_url:
            return self.redis_url
        try:
            return self.redis_url_file.read_text().strip()
        except FileNotFoundError:
            return f"unix://{self.redis_socket.resolve()}"


def build_settings(**overrides: object) -> Settings:
    """Read the environment now (never at import) and apply explicit overrides, such as CLI flags."""
    values = {k: v for k, v in overrides.items() if v is not None}
    settings = Settings(**values)  # type: ignore[arg-type]
    settings.data = settings.data.resolve()
    settings.inbox = settings.inbox.resolve()
    return settings
