"""The group-call focus in the lab: registers ``sip:<group>@lab.test`` with the lab's Kamailio (TLS).

The group's SIP account is an ordinary lab user (Kamailio digest password); it is provisioned at the KMS
like every lab user, but the focus never opens that keystore — it holds no keys.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import replace

import numpy as np

from focus.service import Focus, FocusConfig
from lab.deployment import Lab
from softphone.media.audio import ArraySource


def lab_focus(lab: Lab, group_user: str = "team") -> Focus:
    """A focus for ``sip:<group_user>@lab.test`` (``group_user`` must be one of the lab's users);
    ``async with`` it to register and serve."""
    if group_user not in lab.users:
        raise ValueError(f"{group_user} is not a lab user: start the Lab with it in users=")
    ua = replace(lab.ua_config(group_user), display_name="group focus")
    return Focus(FocusConfig(group_uri=lab.uri(group_user)), ua)


class GatedSource:
    """An audio source that is silent (``None``) until :meth:`open`, then plays ``samples`` once: every
    member of a lab group call starts talking only when all have joined, so everyone hears all of it."""

    def __init__(self, samples: np.ndarray) -> None:
        self._inner = ArraySource(samples)
        self.opened = False

    def open(self) -> None:
        self.opened = True

    def read(self) -> np.ndarray | None:
        return self._inner.read() if self.opened else None

    def close(self) -> None:
        self._inner.close()


class PerSender:
    """Collects the frames a group member decoded, per sender (``GroupMediaSession.on_sender_frame``)."""

    def __init__(self) -> None:
        self.frames: dict[str, list[np.ndarray]] = defaultdict(list)

    def __call__(self, sender: str, frame: np.ndarray) -> None:
        self.frames[sender].append(frame)

    def samples(self, sender: str) -> np.ndarray:
        got = self.frames.get(sender)
        return np.concatenate(got) if got else np.zeros(0, dtype=np.int16)
