"""One registry for every network (segmentation, denoising, classification, MAE).

Models register a *builder* with :func:`register_model`; :func:`create`
builds one by name and :func:`list_models` finds names by glob pattern, as
timm does::

    >>> from medattn.models import create, list_models
    >>> "unet" in list_models("unet*")
    True
    >>> net = create("unet", in_channels=3, num_classes=1)

Registration happens when the module defining the model is imported;
``medattn.models`` imports all of them, so the registry is always complete.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from medattn.errors import ConfigError

TASKS = ("segmentation", "denoising", "classification", "reconstruction", "colorization", "detection")


@dataclass(frozen=True)
class ModelInfo:
    """Static facts about a registered model.

    Attributes:
        name: registry name (``bsanet``, ``hlfnet``, ...).
        task: one of :data:`TASKS`.
        builder: callable returning an ``nn.Module``; keyword options are forwarded.
        input_size: default (H, W) the model was designed / trained for.
        paper: short citation of the source paper, when there is one.
        paper_params: parameter count the paper reports (for the tests' 10 % check).
        default_options: options the builder uses when none are given (shown in ``medattn models``).
        description: one line for listings.
    """

    name: str
    task: str
    builder: Callable[..., Any]
    input_size: tuple[int, int] = (256, 256)
    paper: str | None = None
    paper_params: int | None = None
    default_options: dict[str, Any] = field(default_factory=dict)
    description: str = ""


_REGISTRY: dict[str, ModelInfo] = {}


def register_model(
    name: str,
    *,
    task: str = "segmentation",
    input_size: tuple[int, int] = (256, 256),
    paper: str | None = None,
    paper_params: int | None = None,
    default_options: dict[str, Any] | None = None,
    description: str = "",
) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Decorator registering a model builder under ``name``."""
    if task not in TASKS:
        raise ValueError(f"unknown task {task!r}; expected one of {TASKS}")

    def deco(builder: Callable[..., Any]) -> Callable[..., Any]:
        if name in _REGISTRY:
            raise ValueError(f"model {name!r} is registered twice")
        doc = (builder.__doc__ or "").strip().splitlines()
        _REGISTRY[name] = ModelInfo(
            name=name,
            task=task,
            builder=builder,
            input_size=tuple(input_size),
            paper=paper,
            paper_params=paper_params,
            default_options=dict(default_options or {}),
            description=description or (doc[0] if doc else ""),
        )
        return builder

    return deco


def _ensure_loaded() -> None:
    # Importing the package imports every model module (and so registers them).
    import medattn.models  # noqa: F401


def list_models(pattern: str = "*", task: str | None = None) -> list[str]:
    """Sorted names matching a glob ``pattern`` (and ``task`` when given)."""
    _ensure_loaded()
    return sorted(
        n for n, info in _REGISTRY.items() if fnmatch.fnmatch(n, pattern) and (task is None or info.task == task)
    )


def model_info(name: str) -> ModelInfo:
    """The :class:`ModelInfo` of ``name``; a :class:`ConfigError` naming close matches if unknown."""
    _ensure_loaded()
    try:
        return _REGISTRY[name]
    except KeyError:
        import difflib

        close = difflib.get_close_matches(name, _REGISTRY, n=3)
        hint = f" (did you mean {', '.join(close)}?)" if close else ""
        raise ConfigError(f"unknown model {name!r}{hint}; see `medattn models`") from None


def create(name: str, **options: Any) -> Any:
    """Build the model registered as ``name`` with ``options`` over its defaults."""
    info = model_info(name)
    kwargs = {**info.default_options, **options}
    try:
        return info.builder(**kwargs)
    except TypeError as exc:
        raise ConfigError(f"model {name!r}: {exc}") from exc
