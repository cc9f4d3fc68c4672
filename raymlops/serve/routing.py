"""The traffic table of one served route: champion, optional challenger, and how traffic splits.

Pure: no Ray. The champion and the challenger are :class:`~raymlops.registry.spec.ModelSpec`
objects. The table travels as a plain dict (:meth:`TrafficTable.to_dict`) between the CLI, the control
actor and the replicas, and every change gets a higher ``epoch``.

- no challenger: every request goes to the champion;
- ``canary``: a share ``weight`` of requests is answered by the challenger. With a ``key``
  column, the share is chosen by hashing the key's value (salted with the challenger's id), so
  one key always sees the same model for as long as the table holds; without one, at random;
- ``shadow``: the champion answers every request; a copy goes to the challenger, whose answer is
  recorded and never returned.

``sample_rate`` (optional) overrides the share of requests the replicas hand to the monitor, so
an operator can turn monitoring down (or off, 0) and back on live, without a redeploy.
"""

from __future__ import annotations

import hashlib
import random
from dataclasses import dataclass, replace
from typing import Any

from raymlops.exceptions import ValidationError
from raymlops.registry.spec import ModelSpec

MODES = ("canary", "shadow")


def key_fraction(key: str, salt: str) -> float:
    """A uniform number in [0, 1) fixed by ``key`` and ``salt`` (stable across processes)."""
    digest = hashlib.sha256(f"{salt}\0{key}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2.0**64


@dataclass(frozen=True)
class TrafficTable:
    champion: ModelSpec
    challenger: ModelSpec | None = None
    mode: str | None = None
    weight: float = 0.0
    key: str | None = None
    epoch: int = 0
    sample_rate: float | None = None  # share of requests handed to the monitor; None: the deployment's

    def __post_init__(self) -> None:
        if not isinstance(self.champion, ModelSpec):
            raise ValidationError(f"traffic table: champion must be a ModelSpec, found {type(self.champion).__name__}")
        if self.sample_rate is not None and not 0.0 <= float(self.sample_rate) <= 1.0:
            raise ValidationError(f"traffic table: sample_rate must be within [0, 1], found {self.sample_rate!r}")
        if self.challenger is None:
            if self.mode is not None or self.weight:
                raise ValidationError("traffic table: mode and weight need a challenger")
            return
        if not isinstance(self.challenger, ModelSpec):
            raise ValidationError("traffic table: challenger must be a ModelSpec, "
                                  f"found {type(self.challenger).__name__}")
        if self.mode not in MODES:
            raise ValidationError(f"traffic table: mode must be one of {', '.join(MODES)}, found {self.mode!r}")
        if not 0.0 <= float(self.weight) <= 1.0:
            raise ValidationError(f"traffic table: weight must be within [0, 1], found {self.weight!r}")
        if self.mode == "shadow" and self.weight:
            raise ValidationError("traffic table: shadow mode takes no weight (every request is copied)")
        if self.challenger.model_id == self.champion.model_id:
            raise ValidationError(f"traffic table: {self.champion.model_id} is already the champion")
        mine, theirs = self.champion.features, self.challenger.features
        if sorted(mine) != sorted(theirs):
            missing = sorted(set(mine) - set(theirs)) or sorted(set(theirs) - set(mine))
            raise ValidationError(
                f"traffic table: the challenger {self.challenger.model_id} takes other inputs than the champion "
                f"{self.champion.model_id} (differs in {', '.join(missing[:5])}); both must read the same request"
            )

    # -- wire form ---------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        return {"champion": self.champion.to_dict(),
                "challenger": None if self.challenger is None else self.challenger.to_dict(), "mode": self.mode,
                "weight": float(self.weight), "key": self.key, "epoch": int(self.epoch),
                "sample_rate": self.sample_rate}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrafficTable:
        challenger = data.get("challenger")
        return cls(champion=ModelSpec.from_dict(data.get("champion"), "traffic table: champion"),
                   challenger=None if challenger is None else ModelSpec.from_dict(challenger,
                                                                                  "traffic table: challenger"),
                   mode=data.get("mode"),
                   weight=float(data.get("weight") or 0.0), key=data.get("key"), epoch=int(data.get("epoch") or 0),
                   sample_rate=None if data.get("sample_rate") is None else float(data["sample_rate"]))

    def summary(self) -> dict[str, Any]:
        """Versions and shares, without the model specs (for /metadata, the CLI and audit)."""
        champion = self.champion.model_id
        out: dict[str, Any] = {"champion": champion, "challenger": None, "mode": None, "weight": 0.0,
                               "key": self.key, "epoch": self.epoch, "shares": {champion: 1.0}}
        if self.sample_rate is not None:
            out["sample_rate"] = self.sample_rate
        if self.challenger is not None:
            challenger = self.challenger.model_id
            out.update(challenger=challenger, mode=self.mode, weight=self.weight)
            if self.mode == "canary":
                out["shares"] = {champion: 1.0 - self.weight, challenger: self.weight}
        return out

    # -- changes ------------------------------------------------------------------------------
    def with_champion(self, spec: ModelSpec) -> TrafficTable:
        """``spec`` serves everything; a challenger that is the new champion is retired."""
        challenger = self.challenger
        if challenger is not None and challenger.model_id == spec.model_id:
            challenger = None
        if challenger is None:
            return TrafficTable(champion=spec, key=self.key, epoch=self.epoch, sample_rate=self.sample_rate)
        try:
            return replace(self, champion=spec)
        except ValidationError:  # the old challenger does not fit the new champion: retire it
            return TrafficTable(champion=spec, key=self.key, epoch=self.epoch, sample_rate=self.sample_rate)

    def with_challenger(self, spec: ModelSpec | None, mode: str | None = None, weight: float = 0.0,
                        key: str | None = None) -> TrafficTable:
        """``spec`` as the challenger (None: no challenger). The route's routing ``key`` stays when
        none is given: clients that send that field go on being answered (it is no feature) after
        the canary ends, is promoted or rolled back, and a later canary is sticky by it too."""
        key = self.key if key is None else key
        if spec is None:
            return TrafficTable(champion=self.champion, key=key, epoch=self.epoch, sample_rate=self.sample_rate)
        return TrafficTable(champion=self.champion, challenger=spec, mode=mode,
                            weight=0.0 if mode == "shadow" else weight, key=key, epoch=self.epoch,
                            sample_rate=self.sample_rate)

    def with_sample_rate(self, rate: float | None) -> TrafficTable:
        """The same routing, with ``rate`` of requests handed to the monitor (None: the rate the
        deployment was configured with, ``monitor.sample_rate``)."""
        return replace(self, sample_rate=None if rate is None else float(rate))

    # -- routing ------------------------------------------------------------------------------
    def canary_for(self, key: str | None, rng: random.Random | None = None) -> bool:
        """True when this request goes to the challenger (canary mode only)."""
        if self.challenger is None or self.mode != "canary" or self.weight <= 0.0:
            return False
        if self.weight >= 1.0:
            return True
        if key is not None:
            return key_fraction(key, self.challenger.model_id) < self.weight
        return (rng or random).random() < self.weight
