"""``PiiPolicy``: what to detect, and whether to mask or block, before a request leaves."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal

from sipp.errors import ConfigurationError, PiiBlockedError
from sipp.pii._spans import Detector, Span
from sipp.pii.masking import MaskingSession
from sipp.pii.patterns import BUILTIN_ENTITIES, PatternDetector

__all__ = ["PiiPolicy"]

PiiMode = Literal["mask", "block", "off"]


class _Only:
    """Keeps a detector's spans of the chosen entity types."""

    def __init__(self, inner: Detector, allowed: frozenset[str]) -> None:
        self._inner = inner
        self._allowed = allowed

    @property
    def entities(self) -> Sequence[str]:
        return [e for e in self._inner.entities if e in self._allowed]

    def detect(self, text: str) -> list[Span]:
        return [s for s in self._inner.detect(text) if s.entity in self._allowed]


@dataclass(frozen=True)
class PiiPolicy:
    """Personal-data handling for requests to provider and gateway endpoints.

    * ``mode``: ``"mask"`` replaces each entity with a per-request placeholder
      (``<EMAIL_1>``) and restores the originals in the answer; ``"block"`` refuses a
      request that contains any (:class:`~sipp.errors.PiiBlockedError` names the types);
      ``"off"`` does nothing.
    * ``entities``: the types to act on (default: every built-in type plus whatever the
      extra detectors report). Built-in: EMAIL, PHONE, PAYMENT_CARD, IBAN, IP_ADDRESS,
      NATIONAL_ID.
    * ``countries``: whose national-ID patterns NATIONAL_ID uses (US, GB, ES, FR, NL).
    * ``detector``: extra detectors, e.g. :class:`~sipp.pii.LocalModelDetector` for names,
      addresses and free-form identifiers.
    * ``local``: also apply to local endpoints (off by default: the text stays in-process).
    """

    mode: PiiMode = "mask"
    entities: Sequence[str] | None = None
    countries: Sequence[str] = ("US",)
    detector: Detector | Sequence[Detector] | None = None
    local: bool = False
    _detectors: tuple[Detector, ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.mode not in ("mask", "block", "off"):
            raise ConfigurationError(f"pii.mode must be mask, block or off; got {self.mode!r}")
        if not isinstance(self.local, bool):
            raise ConfigurationError("pii.local must be a bool")
        extra: list[Detector] = []
        if self.detector is not None:
            items = (
                list(self.detector) if isinstance(self.detector, Sequence) else [self.detector]
            )
            for i, item in enumerate(items):
                if not isinstance(item, Detector):
                    raise ConfigurationError(
                        f"pii.detector[{i}] must have entities and detect(text), got "
                        f"{type(item).__name__}"
                    )
            extra = items
        if self.entities is not None and (
            isinstance(self.entities, str) or not isinstance(self.entities, Sequence)
        ):
            raise ConfigurationError("pii.entities must be a list of entity type names")
        known = set(BUILTIN_ENTITIES).union(*(set(d.entities) for d in extra))
        chosen = list(self.entities) if self.entities is not None else sorted(known)
        for name in chosen:
            if name not in known:
                raise ConfigurationError(
                    f"pii.entities: unknown entity type {name!r} (known: "
                    f"{', '.join(sorted(known))})"
                )
        builtin = [e for e in chosen if e in BUILTIN_ENTITIES]
        detectors: list[Detector] = []
        if builtin:
            detectors.append(PatternDetector(builtin, tuple(self.countries)))
        allowed = frozenset(chosen)
        detectors += [_Only(d, allowed) for d in extra]
        object.__setattr__(self, "_detectors", tuple(detectors))

    def applies_to(self, endpoint_kind: str) -> bool:
        """Whether requests to an endpoint of this kind are checked."""
        if self.mode == "off":
            return False
        return endpoint_kind != "local" or self.local

    def session(self) -> MaskingSession:
        """A fresh masking session (one per request)."""
        return MaskingSession(self._detectors)

    def check(self, session: MaskingSession, texts: Sequence[str]) -> list[str]:
        """Mask ``texts`` (mode mask) or raise :class:`PiiBlockedError` (mode block)."""
        if self.mode == "block":
            found = sorted({s.entity for text in texts for s in session.detect(text)})
            if found:
                raise PiiBlockedError(
                    f"request blocked by the PII policy: it contains {', '.join(found)}"
                )
            return list(texts)
        return [session.mask(text) for text in texts]
