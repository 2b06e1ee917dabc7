"""The parameters of the `build-dataset` flow checked together (`BuildParameters`), and how the
flow's docstring and the command line get their help text from the aliases.

Each field's type and limits are written once, as `Annotated` aliases in
`flows/param_types.py`, and used both by `BuildParameters` (the whole set, with the
cross-field rules) and by the flow's signature in `flows/build.py` (Prefect builds the UI form
and the server-side checks from it). Rules that involve several fields (ratios adding up to
more than 1, PNG compression levels, secrets in storage options: `flows/param_secrets.py`) are
checked by `BuildParameters` before any work starts.

This module imports pydantic only, so the command line can build its options without Prefect.
"""

from __future__ import annotations

import inspect
import typing
from collections.abc import Callable, Mapping
from typing import Annotated, Any, TypeVar
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator
from pydantic.fields import FieldInfo

from recordio_core.storage.fsio import CREDENTIALS_KEY
from recordio_flow.flows.param_secrets import secret_paths
from recordio_flow.flows.param_types import (
    DEFAULT_EXTS,
    DEFAULT_IO_CONCURRENCY,
    DEFAULT_MAX_PIXELS,
    DEFAULT_NEAR_DUPLICATE_DISTANCE,
    DEFAULT_REDUCING_GAP,
    AllowOutsideRoot,
    CenterCrop,
    Chunks,
    Color,
    CredentialsBlockParam,
    DaskAddress,
    Dedupe,
    DryRun,
    Encoding,
    Exts,
    InterMethod,
    IoConcurrency,
    LabelWidth,
    Lst,
    MaxPixels,
    MaxRejectFraction,
    NearDuplicateDistance,
    NumWorkers,
    OnDecodeWarning,
    Output,
    PackLabel,
    PassThrough,
    Quality,
    RecordOrder,
    RecordsPerShard,
    Recursive,
    ReducingGap,
    RejectPolicy,
    Resize,
    Seed,
    Shuffle,
    Source,
    SourceCredentialsBlockParam,
    SourceStorageOptionsParam,
    SplitMethod,
    SplitSalt,
    StorageOptionsParam,
    Streaming,
    TestRatio,
    TrainRatio,
    ValidateDecode,
    Verify,
)
from recordio_flow.tasks.credentials import check_block_ref


class BuildParameters(BaseModel):
    """Every parameter of `build-dataset`, checked together."""

    # hide_input_in_errors: an error must never echo a value back (a storage option refused for
    # holding a credential would otherwise print the credential).
    model_config = ConfigDict(extra="forbid", frozen=True, hide_input_in_errors=True)

    # The order is the form's order in the Prefect UI: the fields people change most first.
    source: Source
    output: Output
    resize: Resize = 0
    label_width: LabelWidth = 1
    train_ratio: TrainRatio = 1.0
    test_ratio: TestRatio = 0.0
    quality: Quality = 95
    pass_through: PassThrough = False
    lst: Lst = None
    pack_label: PackLabel = None
    allow_outside_root: AllowOutsideRoot = False
    recursive: Recursive = True
    exts: Exts = Field(default_factory=lambda: list(DEFAULT_EXTS))
    split_method: SplitMethod = "stable"
    record_order: RecordOrder = "hash"
    shuffle: Shuffle = True
    seed: Seed = 100
    chunks: Chunks = 1
    split_salt: SplitSalt = ""
    center_crop: CenterCrop = False
    color: Color = 1
    encoding: Encoding = ".jpg"
    inter_method: InterMethod = 1
    verify: Verify = "header"
    max_pixels: MaxPixels = DEFAULT_MAX_PIXELS
    reducing_gap: ReducingGap = DEFAULT_REDUCING_GAP
    records_per_shard: RecordsPerShard = None
    num_workers: NumWorkers = 0
    io_concurrency: IoConcurrency = DEFAULT_IO_CONCURRENCY
    reject_policy: RejectPolicy = "skip"
    max_reject_fraction: MaxRejectFraction = 1.0
    validate_decode: ValidateDecode = False
    on_decode_warning: OnDecodeWarning = "keep"
    dedupe: Dedupe = "none"
    near_duplicate_distance: NearDuplicateDistance = DEFAULT_NEAR_DUPLICATE_DISTANCE
    dry_run: DryRun = False
    streaming: Streaming = False
    storage_options: StorageOptionsParam = None
    source_storage_options: SourceStorageOptionsParam = None
    credentials_block: CredentialsBlockParam = None
    source_credentials_block: SourceCredentialsBlockParam = None
    dask_address: DaskAddress = None

    @field_validator("exts")
    @classmethod
    def _exts(cls, value: list[str]) -> list[str]:
        for ext in value:
            if not ext.startswith(".") or len(ext) < 2 or "/" in ext:
                raise ValueError(f"extensions look like '.jpg'; got {ext!r}")
        return value

    @field_validator("source", "output", "lst")
    @classmethod
    def _no_password_in_url(cls, value: str | None) -> str | None:
        try:
            password = urlsplit(value).password if value and "://" in value else None
        except ValueError:
            password = None
        if password:
            raise ValueError(
                "URLs must not carry a password (user:password@host): parameters are stored by "
                "Prefect and shown in its UI, and URLs appear in logs. Provide credentials "
                "through the environment or fsspec config."
            )
        return value

    @field_validator("storage_options", "source_storage_options")
    @classmethod
    def _no_secrets(cls, value: dict[str, Any] | None) -> dict[str, Any] | None:
        found = secret_paths(value or {})
        if found:
            raise ValueError(
                f"storage options must not hold credentials (found {', '.join(found)}): "
                "parameters are stored by Prefect and shown in its UI. Provide credentials "
                "through the environment (AWS_ACCESS_KEY_ID, ...), AWS config files or fsspec "
                "config; `recflow build --storage-options` keeps them in its own process."
            )
        return value

    @field_validator("credentials_block", "source_credentials_block")
    @classmethod
    def _block_ref(cls, value: str | None) -> str | None:
        return value if value is None else check_block_ref(value)

    @model_validator(mode="after")
    def _cross_checks(self) -> BuildParameters:
        if self.train_ratio < 1.0 and self.train_ratio + self.test_ratio > 1.0 + 1e-9:
            raise ValueError(
                f"train_ratio + test_ratio must be <= 1 (val gets the rest); got "
                f"{self.train_ratio} + {self.test_ratio}"
            )
        if self.chunks > 1 and self.split_method != "im2rec":
            raise ValueError("chunks > 1 needs split_method='im2rec' (it is im2rec's --chunks)")
        if self.encoding == ".png" and not self.pass_through and self.quality > 9:
            raise ValueError(
                f"with encoding '.png', quality is the PNG compression level 0-9; got "
                f"{self.quality}"
            )
        if self.label_width > 1 and self.lst is None:
            raise ValueError(
                f"label_width={self.label_width} needs a .lst with that many label columns "
                "(lst=...); a folder listing gives one label per image"
            )
        if self.pass_through and (self.resize or self.center_crop):
            raise ValueError(
                "pass_through stores files untouched: it cannot be combined with resize or "
                "center_crop"
            )
        if self.streaming:
            self._check_streaming()
        if self.source.rstrip("/") == self.output.rstrip("/"):
            raise ValueError("output must be a different folder than source")
        return self

    def _check_streaming(self) -> None:
        wrong = [
            f"{name}={getattr(self, name)!r} (needs {want!r})"
            for name, want in (
                ("split_method", "stable"),
                ("record_order", "hash"),
            )
            if getattr(self, name) != want
        ]
        if wrong:
            raise ValueError(
                "streaming lists the source (or the .lst) in parts and splits and orders each "
                "image by its own hash; it cannot take " + ", ".join(wrong)
            )

    @property
    def packs_labels(self) -> bool:
        """Whether records hold all labels in their header: `pack_label`, or when it is left
        empty, `label_width > 1`. With one label the header is the same either way (im2rec packs
        only lines with several labels), so this is False then: what the bytes hold."""
        return self.label_width > 1 and self.pack_label is not False

    @property
    def output_options(self) -> dict[str, Any]:
        """fsspec options for OUTPUT: `storage_options`, naming `credentials_block` if set."""
        return with_credentials(self.storage_options, self.credentials_block)

    @property
    def source_options(self) -> dict[str, Any]:
        """fsspec options for SOURCE (and `lst`): `source_storage_options` or the output's,
        naming `source_credentials_block` or else `credentials_block` if either is set."""
        options = self.source_storage_options
        if options is None:
            options = self.storage_options
        return with_credentials(options, self.source_credentials_block or self.credentials_block)


def with_credentials(options: Mapping[str, Any] | None, block: str | None) -> dict[str, Any]:
    """`options` naming `block` as where their credentials are (resolved by tasks/credentials.py
    where a filesystem is opened: the block is loaded there, never passed around)."""
    out = dict(options or {})
    if block is not None:
        out[CREDENTIALS_KEY] = block
    return out


PARAMETER_NAMES: tuple[str, ...] = tuple(BuildParameters.model_fields)

_F = TypeVar("_F", bound=Callable[..., Any])


def annotation_description(annotation: Any) -> str | None:
    """The `Field(description=...)` of an `Annotated` alias (nested aliases merged, the
    innermost-last wins as in pydantic), or None."""
    if typing.get_origin(annotation) is not Annotated:
        return None
    return FieldInfo.from_annotation(annotation).description


def describe_parameters(fn: _F) -> _F:
    """Append a Google-style `Args:` section to `fn`'s docstring, one line per parameter, from
    the `Field(description=...)` of its `Annotated` type. Apply it below `@flow`.

    Why: Prefect builds each parameter's schema with its own `Field(description=None)`, which
    replaces the description inside `Annotated`; what it does read is the docstring's `Args:`
    section. So the Prefect form (`parameter_openapi_schema`), `recflow build --help` (from
    `BuildParameters`) and `help()` all show the one text written in the aliases above, and a
    new parameter written in the same style is described everywhere without more code.
    """
    hints = typing.get_type_hints(fn, include_extras=True)
    lines = []
    for name in inspect.signature(fn).parameters:
        text = annotation_description(hints.get(name))
        if text:
            lines.append(f"    {name}: {' '.join(text.split())}")
    if lines:
        doc = inspect.cleandoc(fn.__doc__ or "")
        fn.__doc__ = f"{doc}\n\nArgs:\n" + "\n".join(lines) + "\n"
    return fn


def parse_parameters(values: Mapping[str, Any]) -> BuildParameters:
    """`BuildParameters` from a mapping; a `ValueError` with one short line per problem."""
    from pydantic import ValidationError

    try:
        return BuildParameters.model_validate(dict(values))
    except ValidationError as exc:
        problems = []
        for err in exc.errors():
            where = ".".join(str(part) for part in err["loc"])
            msg = err["msg"].removeprefix("Value error, ")
            problems.append(f"{where}: {msg}" if where else msg)
        raise ValueError("invalid parameters: " + "; ".join(problems)) from None
