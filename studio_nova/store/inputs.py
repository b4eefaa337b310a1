"""What callers hand the store, checked in one way before any transaction opens.

Each kind of argument is a type: an `Annotated` alias that pydantic validates strictly (a bool is
not an integer, "24" is not a frame rate) and that converts where the store needs it (a float
rate becomes the exact `Fraction`, a JSON field becomes a plain copy). Its `Refusal` words the
`ValueError` the store raises, always naming the argument and the value it got, e.g.
"width must be at least 1, got 0". `check` validates one argument; `ShotFields` validates the
fields of a shot together, since `last_frame` is checked against `first_frame`.
`KeyframeFile` is the one record callers build themselves (`Store.add_keyframe_version`).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from fractions import Fraction
from functools import cache
from typing import Annotated, Any, TypeVar, get_args, get_type_hints

from annotated_types import Ge, Gt
from pydantic import (
    AfterValidator,
    PlainValidator,
    Strict,
    StringConstraints,
    TypeAdapter,
    ValidationError,
    ValidationInfo,
    field_validator,
)
from pydantic.dataclasses import dataclass as pydantic_dataclass
from pydantic_core import ErrorDetails, PydanticCustomError

from studio_nova.store.tables import ReviewDecision, ShotStatus

_T = TypeVar("_T")


class Refusal:
    """How a refused argument reads, after its name: a template per pydantic error type, and a
    default. Templates see `value` (what the caller passed), `type` (its type's name), `error`
    (a validator's own words) and the error's context (`ge`, ...)."""

    __slots__ = ("_templates",)

    def __init__(self, default: str, **by_error_type: str) -> None:
        self._templates = {"": default, **by_error_type}

    def words(self, name: str, value: object, error: ErrorDetails) -> str:
        template = self._templates.get(error["type"], self._templates[""])
        context = error.get("ctx", {})
        return f"{name} " + template.format(value=value, type=type(value).__name__, **context)


def _through_json(value: dict[Any, Any]) -> dict[str, Any]:
    try:
        return json.loads(json.dumps(value))
    except TypeError as exc:  # pydantic reports a ValueError as the validator's own words
        raise ValueError(str(exc)) from exc


def _fraction(value: object) -> Fraction:
    if isinstance(value, bool) or not isinstance(value, (Fraction, int, float)):
        raise PydanticCustomError("fraction_type", "a rate is a Fraction, an int or a float")
    rate = Fraction(value)
    if isinstance(value, float):  # OTIO's 23.976023976... is 24000/1001, not its binary digits
        rate = rate.limit_denominator(1001)
    return rate


# A non-empty string (names, keys, paths as text, workers, errors): not only whitespace.
Text = Annotated[
    str, Strict(), StringConstraints(pattern=r"\S"),
    Refusal("must be a non-empty string, got {value!r}"),
]
# Any string, empty included (notes, an instruction).
AnyText = Annotated[str, Strict(), Refusal("must be a string, got {value!r}")]
Integer = Annotated[
    int, Strict(),
    Refusal(
        "must be an integer, got {value!r}",
        greater_than_equal="must be at least {ge}, got {value}",
    ),
]
FrameNumber = Annotated[Integer, Ge(0)]
Size = Annotated[Integer, Ge(1)]
JsonObject = Annotated[
    dict[Any, Any], Strict(), AfterValidator(_through_json),
    Refusal("must be a dict, got {type}", value_error="must be JSON-serialisable: {error}"),
]
FrameRate = Annotated[
    Fraction, PlainValidator(_fraction), Gt(0),
    Refusal("must be a Fraction, got {value!r}", greater_than="must be positive, got {value!r}"),
]
Status = Annotated[
    ShotStatus, PlainValidator(ShotStatus),
    Refusal(f"must be one of {', '.join(s.value for s in ShotStatus)}; got {{value!r}}"),
]
Decision = Annotated[
    ReviewDecision, PlainValidator(ReviewDecision),
    Refusal("must be 'approved' or 'rejected', got {value!r}"),
]


def _refusal(kind: Any) -> Refusal:
    return next(m for m in get_args(kind)[1:] if isinstance(m, Refusal))


@cache
def _adapter(kind: Any) -> TypeAdapter[Any]:
    return TypeAdapter(kind)


def check(name: str, value: object, kind: Any) -> Any:
    """`value` as `kind` (one of the types above), or a ValueError naming `name` and `value`."""
    try:
        return _adapter(kind).validate_python(value)
    except ValidationError as exc:
        raise ValueError(_refusal(kind).words(name, value, exc.errors()[0])) from None


def check_fields(record: type[_T], **values: object) -> _T:
    """`record` (a pydantic dataclass of the types above) built from `values`; the first field
    refused, in field order, raises as `check` does."""
    try:
        return record(**values)
    except ValidationError as exc:
        error = exc.errors()[0]
        name = str(error["loc"][0])
        kind = get_type_hints(record, include_extras=True)[name]
        raise ValueError(_refusal(kind).words(name, values[name], error)) from None


@pydantic_dataclass(frozen=True)
class ShotFields:
    """The checked fields of `Store.upsert_shot` (media already a path string)."""

    key: Text
    name: Text
    media: Text
    first_frame: FrameNumber
    last_frame: Integer
    rate: FrameRate
    width: Size
    height: Size
    bit_depth: Size
    edit: JsonObject
    fingerprint: Text

    @field_validator("last_frame")
    @classmethod
    def _not_before_first_frame(cls, last_frame: int, info: ValidationInfo) -> int:
        first_frame = info.data.get("first_frame")  # absent when first_frame was refused
        if first_frame is not None and last_frame < first_frame:
            raise PydanticCustomError(
                "greater_than_equal", "last_frame before first_frame", {"ge": first_frame}
            )
        return last_frame


@dataclass(frozen=True, slots=True)
class KeyframeFile:
    """One keyframe handed to `Store.add_keyframe_version` (paths as the editor wrote them)."""

    source_frame: int
    original_path: str | os.PathLike[str]
    edited_path: str | os.PathLike[str]
    mask_path: str | os.PathLike[str] | None = None
