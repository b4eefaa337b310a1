"""All configuration in one pydantic-settings model (environment prefix `STUDIO_NOVA_`).

Every field is documented in the README's configuration table; keep the two in step.

Settings are built once, at the edge of a process (the CLI, a flow, a benchmark, `Workspace.open`
when given none), with `load_settings()`, and passed down from there: the workflow hands them to
plugins in their contexts (`EditContext.settings`, `MatteContext.settings`,
`BackgroundContext.settings`) and to the registry (`load_plugin(..., settings=)`, which calls a
plugin's `from_settings`). Library and plugin code never reads the environment itself.
`Settings(...)` stays constructible directly, for tests.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import Field, ValidationError, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict
from pydantic_settings.exceptions import SettingsError

from studio_nova.errors import ConfigError

# Each cron field: its name, its range, and the names it accepts (JAN…DEC, SUN…SAT) in place of numbers.
_CRON_FIELDS = (
    ("minute", 0, 59, ()),
    ("hour", 0, 23, ()),
    ("day of month", 1, 31, ()),
    ("month", 1, 12, ("JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC")),
    ("day of week", 0, 7, ("SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT")),
)


def validate_cron(value: str) -> str:
    """A 5-field cron expression (`minute hour day-of-month month day-of-week`), normalised to single
    spaces; a ValueError naming the bad field otherwise. Items are `*`, `N`, `N-M`, each with an
    optional `/step`, separated by commas; months and weekdays may be named (JAN, MON)."""
    fields = str(value).split()
    if len(fields) != 5:
        raise ValueError(
            f"a cron needs 5 fields (minute hour day-of-month month day-of-week), got {len(fields)} in {value!r}"
        )
    for text, (name, low, high, names) in zip(fields, _CRON_FIELDS):
        for item in text.split(","):
            span, _, step = item.partition("/")
            if step and not (step.isdigit() and int(step) > 0):
                raise ValueError(f"cron {name} field {text!r}: step {step!r} is not a positive number")
            if span == "*":
                continue
            for bound in span.split("-", 1):
                if bound.upper() in names:
                    continue
                if not (bound.isdigit() and low <= int(bound) <= high):
                    raise ValueError(f"cron {name} field {text!r}: {bound!r} is not in {low}-{high}")
    return " ".join(fields)


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="STUDIO_NOVA_", extra="ignore")

    database_url: str | None = Field(
        None,
        description="SQLAlchemy URL of the store. Default: SQLite at OUT/studio-nova.db.",
    )
    ffmpeg: str | None = Field(
        None, description="ffmpeg binary. Default: the one imageio-ffmpeg ships."
    )
    chunk_length: int = Field(81, description="Frames per chunk (4n+1).")
    chunk_overlap: int = Field(16, description="Frames shared by neighbouring chunks (multiple of 4).")
    keyframe_interval: int = Field(10, description="Frames between keyframes.")
    default_editor: str = Field("recolor", description="Editor for `NOVA:` markers.")
    # NoDecode: the JSON is parsed by `_params_from_json` below, so a malformed value is a
    # validation error naming the variable (pydantic-settings' own decoding raises before that).
    default_params: Annotated[dict[str, Any], NoDecode] = Field(
        default_factory=dict, description="Editor params for `NOVA:` markers (JSON)."
    )
    default_seed: int = Field(0, description="Seed when an edit request names none.")
    backend: str = Field("flow", description="Propagator used by `run` unless --backend is given.")
    flow_preset: str = Field("fast", description="DIS optical-flow preset of `flow`: ultrafast|fast|medium.")
    prores_qscale: int = Field(4, description="ProRes 422 HQ quantiser (lower = larger, slower).")
    proxy_crf: int = Field(20, description="H.264 review proxy quality (x264 CRF).")
    vfr: Literal["refuse", "resample"] = Field(
        "refuse",
        description="Variable-frame-rate media: refuse it (naming the file and its measured rates), or "
        "resample it to the cut's rate by its timestamps.",
    )
    reviewer: str | None = Field(None, description="Name recorded on CLI reviews. Default: the OS user.")
    review_timeout_hours: float = Field(
        48.0, description="Hours a review waits for an answer before it is reported expired."
    )
    prefect_port: int = Field(
        4200, description="Port of `studio-nova server` (UI and API); `run` and `review` look for it there."
    )
    lease_seconds: float = Field(
        120.0,
        ge=1,
        description="Seconds a worker's render lease on a shot lasts without a heartbeat (it renews it every quarter "
        "of that); a lost worker's shot is taken over by another worker this long after its last heartbeat.",
    )
    render_attempts: int = Field(
        3,
        ge=1,
        description="Times a chunk is attempted, across workers, before its shot fails: transient failures (GPU out "
        "of memory, an encoder killed, a lost worker) are retried; a bad input fails the shot at once.",
    )
    farm_poll_seconds: float = Field(
        10.0, ge=1, description="How often a farm render (nightly, on approval) looks at its shots' progress and leases."
    )
    nightly_cron: str = Field(
        "0 1 * * *",
        description="When the nightly render runs: a 5-field cron (minute hour day month weekday), UTC.",
    )

    # Model backends (weights are only ever read from local folders; nothing is fetched).
    device: str = Field("auto", description="Torch device for model plugins: auto|cpu|cuda|cuda:N.")
    nova_base: str | None = Field(
        None, description="Folder of the base model in diffusers layout (Wan2.1-VACE-1.3B-diffusers)."
    )
    nova_adapter: str | None = Field(None, description="NOVA adapter weights (.safetensors file).")
    nova_steps: int = Field(50, description="Denoising steps of the nova propagator.")
    nova_text_scale: float = Field(5.0, description="Classifier-free guidance scale for the text condition.")
    nova_keyframe_scale: float = Field(
        1.0, description="Guidance scale for the sparse keyframe condition (1 = no extra pass)."
    )
    nova_window: int | None = Field(
        None, description="Cross-attention reach in latent frames (±w); unset: what the adapter records."
    )
    nova_seed: int = Field(0, description="Seed of the nova propagator's noise.")
    flux_kontext_dir: str | None = Field(None, description="Folder of FLUX.1 Kontext in diffusers layout.")
    qwen_image_edit_dir: str | None = Field(None, description="Folder of Qwen-Image-Edit in diffusers layout.")
    model_offload: bool = Field(False, description="CPU-offload model components (small GPUs).")
    segmentation_dir: str | None = Field(
        None, description="Folder of a SAM 2 video segmentation model (transformers layout) for the `segmentation` matte."
    )
    background_t2i_dir: str | None = Field(
        None, description="Folder of a text-to-image pipeline (diffusers layout) for generated backgrounds."
    )
    background_i2v_dir: str | None = Field(
        None, description="Folder of Wan 2.1 image-to-video (diffusers layout) that animates generated backgrounds."
    )
    media_roots: Annotated[list[Path], NoDecode] = Field(
        default_factory=list,
        description="Folders a cut may reference (media, plates, mattes, painted keyframes, folders in params); "
        "empty: anywhere readable. In the environment a path list like PATH (os.pathsep-separated) or a JSON list.",
    )

    @field_validator("default_params", mode="before")
    @classmethod
    def _params_from_json(cls, value: Any) -> Any:
        if not isinstance(value, str):
            return value
        try:
            parsed = json.loads(value) if value.strip() else {}
        except json.JSONDecodeError as exc:
            raise ValueError(
                f"not valid JSON ({exc.msg} at character {exc.pos}); give a JSON object, "
                'e.g. {"hue_shift": 120}'
            ) from None
        if not isinstance(parsed, dict):
            raise ValueError('must be a JSON object of editor params, e.g. {"hue_shift": 120}')
        return parsed

    @field_validator("media_roots", mode="before")
    @classmethod
    def _roots_from_path_list(cls, value: Any) -> Any:
        if isinstance(value, (str, Path)):
            text = str(value).strip()
            if text.startswith("["):
                try:
                    return json.loads(text)
                except json.JSONDecodeError as exc:
                    raise ValueError(f"not a valid JSON list ({exc.msg}); or give folders separated by {os.pathsep!r}") from None
            return [part for part in text.split(os.pathsep) if part.strip()]
        return value

    @field_validator("media_roots")
    @classmethod
    def _roots_absolute(cls, value: list[Path]) -> list[Path]:
        roots = []
        for root in value:
            root = root.expanduser()
            if not root.is_absolute():
                raise ValueError(f"media roots must be absolute folders, got {str(root)!r}")
            roots.append(Path(os.path.realpath(root)))  # symlinks and '..' resolved, as paths are checked
        return roots

    @field_validator("chunk_length")
    @classmethod
    def _chunk_is_4n_plus_1(cls, value: int) -> int:
        if value < 5 or (value - 1) % 4:
            raise ValueError(f"chunk_length must be 4n+1 and at least 5, got {value}")
        return value

    @field_validator("chunk_overlap")
    @classmethod
    def _overlap_multiple_of_4(cls, value: int) -> int:
        if value < 0 or value % 4:
            raise ValueError(f"chunk_overlap must be a non-negative multiple of 4, got {value}")
        return value

    @field_validator("review_timeout_hours")
    @classmethod
    def _timeout_positive(cls, value: float) -> float:
        if value <= 0:
            raise ValueError(f"must be positive, got {value}")
        return value

    @field_validator("keyframe_interval")
    @classmethod
    def _interval_positive(cls, value: int) -> int:
        if value < 1:
            raise ValueError(f"keyframe_interval must be at least 1, got {value}")
        return value

    @field_validator("nightly_cron")
    @classmethod
    def _cron_has_5_fields(cls, value: str) -> str:
        return validate_cron(value)

    @field_validator("vfr", mode="before")
    @classmethod
    def _vfr_policy(cls, value: Any) -> Any:
        text = str(value).strip().lower() if isinstance(value, str) else value
        if text not in ("refuse", "resample"):
            raise ValueError(f"must be 'refuse' or 'resample', got {value!r}")
        return text

    def store_url(self, out_dir: Path | None) -> str:
        """The store to use: the configured URL, else SQLite inside the output folder."""
        if self.database_url:
            return self.database_url
        if out_dir is None:
            raise ValueError("no store: set STUDIO_NOVA_DATABASE_URL or pass --out")
        return f"sqlite:///{(Path(out_dir) / 'studio-nova.db').resolve()}"


def load_settings(**overrides: Any) -> Settings:
    """Settings from the environment, with a bad value reported as a ConfigError naming its variable."""
    try:
        return Settings(**overrides)
    except SettingsError as exc:  # a value pydantic-settings itself could not decode
        raise ConfigError(f"invalid setting: {exc}; check the STUDIO_NOVA_ variables") from None
    except ValidationError as exc:
        problems = "; ".join(
            f"STUDIO_NOVA_{'_'.join(str(p) for p in err['loc']).upper()}: {err['msg']}"
            + (f" (got {err['input']!r})" if "input" in err and not isinstance(err["input"], dict) else "")
            for err in exc.errors()
        )
        raise ConfigError(f"invalid setting: {problems}") from None
