"""Plain records shared by the dataset adapters, the engine and the CLI."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path


@dataclass(frozen=True)
class Sample:
    """One image, with its mask when the dataset is labelled.

    Attributes:
        id: unique within its dataset (file stem, or ``<subset>/<stem>`` when stems repeat).
        image: path of the image file.
        mask: path of the binary mask (foreground where value > 127), or ``None``.
        dataset: name of the dataset it came from (``kvasir-seg``, ``cvc-clinicdb``, ``ph2`` ...).
        extra_masks: further mask files merged into one (DSB2018 instance masks).
    """

    id: str
    image: Path
    mask: Path | None = None
    dataset: str = ""
    extra_masks: tuple[Path, ...] = ()


@dataclass
class DatasetIndex:
    """What an adapter found in a folder."""

    root: Path
    layout: str
    samples: list[Sample] = field(default_factory=list)
    unmatched_images: list[Path] = field(default_factory=list)
    unmatched_masks: list[Path] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    # Per-sample class labels when the dataset ships them (PH2 clinical diagnosis).
    labels: dict[str, str] = field(default_factory=dict)

    @property
    def labelled(self) -> bool:
        return any(s.mask is not None or s.extra_masks for s in self.samples)

    def __len__(self) -> int:
        return len(self.samples)
