"""One settings object, read from ``CHOPMARK_*`` environment variables (or a ``.env`` file)."""

from __future__ import annotations

from functools import cached_property
from pathlib import Path
from typing import Literal

from pydantic import Field, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    """Service configuration. Every field is documented in the README's configuration table."""

    model_config = SettingsConfigDict(
        env_prefix="CHOPMARK_", env_file=".env", extra="ignore", allow_inf_nan=False
    )

    environment: Literal["development", "production"] = "development"
    data_dir: Path = Field(default=Path("./.chopmark"), description="blobs, indexes, embedded db")
    database_url: str | None = Field(default=None, description="unset: embedded PostgreSQL")
    host: str = "127.0.0.1"
    port: int = Field(default=8000, ge=1, le=65535)
    workers: int = Field(default=1, ge=1)
    shutdown_grace_seconds: int = Field(
        default=20, ge=1, description="on SIGTERM, how long requests in flight may finish"
    )

    max_upload_bytes: int = Field(default=25 * 1024 * 1024, ge=1)
    max_request_bytes: int = Field(default=200 * 1024 * 1024, ge=1)
    max_files_per_request: int = Field(default=100, ge=1)
    max_image_pixels: int = Field(default=80_000_000, ge=1)
    max_image_side: int = Field(default=20_000, ge=1)

    index_refresh_seconds: float = Field(default=2.0, ge=0.05)  # 0 would poll without pause
    index_stale_seconds: float = Field(default=30.0, gt=0)
    index_snapshot_every: int = Field(default=1000, ge=1)
    index_nprobe: int = Field(
        default=16,
        ge=1,
        le=1024,
        description="inverted lists a dense search probes once an index is approximate (above "
        "50,000 works): more find more heavily edited copies among many works, for more CPU",
    )
    # at least moderation_workers + 2 (each batch worker holds one while it checks an item)
    db_pool_max: int = Field(default=10, ge=2)

    signing_chain: Path | None = Field(
        default=None, description="PEM chain, leaf first, no root; unset: a development CA"
    )
    signing_key: Path | None = None
    trust_anchors: list[Path] = Field(default_factory=list, description="extra root PEM files")
    prompt_privacy: bool = Field(default=False, description="manifests hold only prompt hashes")
    write_parameters: bool = Field(default=False, description="A1111 `parameters` label")
    output_format: Literal["png", "jpeg", "webp"] = "png"
    sbr_public: bool = Field(default=False, description="/sbr without an API key")

    model: Path | None = Field(
        default=None, description="diffusers folder or checkpoint; unset: tiny default (noise)"
    )
    controlnet: Path | None = Field(
        default=None,
        description="ControlNet folder or .safetensors; unset: a tiny one with the tiny model",
    )
    screen_policy: Literal["flag", "block"] = "flag"
    generation_lease_seconds: float = Field(
        default=60.0,
        gt=0,
        description="a queued/running generation not renewed for this long "
        "was abandoned by a dead process and is marked failed",
    )
    clip_screen_threshold: float = Field(default=0.95, ge=0, le=1)
    max_adapter_bytes: int = Field(default=2 * 1024**3, ge=1)
    moderation_policy: Path | None = Field(default=None, description="policy file (TOML/JSON)")
    moderation_workers: int = Field(default=1, ge=0, description="batch worker threads")
    query_helper_threads: int | None = Field(
        default=None, ge=0,
        description="threads that share each match query's work; unset: CPUs - 1 (1 to 4)",
    )
    image_workers: int | None = Field(
        default=None, ge=1,
        description="requests doing image work (decode, fingerprints, watermark, matching) at "
        "once in one API process; more wait their turn; unset: two per usable CPU",
    )
    opencv_threads: int = Field(
        default=1,
        ge=-1,
        description="OpenCV's own threads for one call (resize, blur, FFT); requests and query "
        "helpers already run side by side, so 1 (none of its own) saves CPU; -1: OpenCV's "
        "default (one per core)",
    )
    moderation_webhook_allow_private: bool | None = None
    moderation_keep_uploads: list[Literal["allow", "review", "block"]] = Field(
        default=["review", "block"],
        description="verdicts whose single-check upload is kept, for the check's picture "
        "(JSON list; [] keeps none); batch uploads are kept until their item is checked, and "
        "then as these say",
    )
    moderation_upload_days: float = Field(
        default=90.0,
        gt=0,
        allow_inf_nan=False,
        description="days a kept upload stays; `chopmark storage gc` removes older ones",
    )

    forwarded_allow_ips: str | None = Field(
        default=None,
        description="addresses of proxies whose X-Forwarded-For and -Proto are trusted (comma "
        "separated, * for any); unset: uvicorn's default, 127.0.0.1",
    )
    portal_signup: Literal["open", "invite"] = Field(
        default="open",
        description="open: anyone may sign up as an artist in the portal; invite: only through "
        "a link from `chopmark artists invite`",
    )
    portal_url: str | None = Field(
        default=None,
        description="the address artists reach the service at, for invitation links; unset: "
        "http://HOST:PORT",
    )
    portal_session_hours: int = Field(
        default=336, ge=1, le=24 * 365, description="how long a portal login lasts"
    )
    portal_secure_cookies: bool | None = Field(
        default=None,
        description="send the portal's login cookie over HTTPS only; unset: in production",
    )

    clip_checkpoint: Path | None = None
    clip_model: str = "ViT-B-32"

    @model_validator(mode="after")
    def _refuse_unsafe_production(self) -> Settings:
        if self.environment == "production" and not self.database_url:
            raise ValueError(
                "CHOPMARK_DATABASE_URL must name a PostgreSQL server in production; "
                "the embedded database is for development only"
            )
        if self.environment == "production" and not (self.signing_chain and self.signing_key):
            raise ValueError(
                "CHOPMARK_SIGNING_CHAIN and CHOPMARK_SIGNING_KEY must name the C2PA signing"
                " certificate chain and key in production; the development CA made in the data"
                " folder is trusted by nobody else"
            )
        return self

    @model_validator(mode="after")
    def _agree_with_each_other(self) -> Settings:
        if self.max_request_bytes < self.max_upload_bytes:
            raise ValueError(
                f"CHOPMARK_MAX_REQUEST_BYTES ({self.max_request_bytes}) is below"
                f" CHOPMARK_MAX_UPLOAD_BYTES ({self.max_upload_bytes}): no upload at the limit"
                " could be sent"
            )
        if self.index_stale_seconds <= self.index_refresh_seconds:
            raise ValueError(
                f"CHOPMARK_INDEX_STALE_SECONDS ({self.index_stale_seconds}) must be more than"
                f" CHOPMARK_INDEX_REFRESH_SECONDS ({self.index_refresh_seconds}), or every index"
                " reads as stale between two refreshes"
            )
        if self.db_pool_max < self.moderation_workers + 2:
            raise ValueError(
                f"CHOPMARK_DB_POOL_MAX ({self.db_pool_max}) must be at least"
                f" CHOPMARK_MODERATION_WORKERS + 2 ({self.moderation_workers + 2}): each batch"
                " worker holds a connection while it checks an item, and the checks' own"
                " queries and the requests need connections beside them"
            )
        if (self.signing_chain is None) != (self.signing_key is None):
            raise ValueError(
                "CHOPMARK_SIGNING_CHAIN and CHOPMARK_SIGNING_KEY go together: name both or neither"
            )
        return self

    @property
    def portal_cookie_secure(self) -> bool:
        if self.portal_secure_cookies is None:
            return self.environment == "production"
        return self.portal_secure_cookies

    @cached_property
    def data_path(self) -> Path:
        path = self.data_dir.expanduser().resolve()
        path.mkdir(parents=True, exist_ok=True)
        return path

    @property
    def blob_dir(self) -> Path:
        return self.data_path / "blobs"

    @property
    def index_dir(self) -> Path:
        return self.data_path / "indexes"

    @property
    def embedded_pg_dir(self) -> Path:
        return self.data_path / "postgres"

    @property
    def signing_dir(self) -> Path:
        return self.data_path / "signing"

    @property
    def keys_dir(self) -> Path:
        return self.data_path / "keys"


def get_settings() -> Settings:
    return Settings()
