"""Delivery: one SIP MESSAGE per member through the registrar (offline members: the proxy's msilo)."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

from gms.keys import GmsSigner
from gms.state import Delivery
from kmsinterface.groupdoc import CONTENT_TYPE
from softphone.sip.errors import SipError
from softphone.sip.im import send_message
from softphone.sip.ua import UAConfig, UserAgent

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Result:
    member: str
    gmk_id: int
    status: int           # the SIP final status (202 = stored for an offline member by msilo), 0 = no answer
    warning: str = ""

    @property
    def ok(self) -> bool:
        return 200 <= self.status < 300 and not self.warning


async def deliver(ua: UserAgent, signer: GmsSigner, deliveries: list[Delivery], *,
                  clock: Callable[[], float] = time.time, timeout: float = 32.0) -> list[Result]:
    """Send each delivery as a group-key MESSAGE; a member that refuses or does not answer is reported,
    never retried here (``group rekey`` or ``add`` again sends a fresh one)."""
    results: list[Result] = []
    for d in deliveries[:10_000]:
        doc = signer.document(d, clock())
        try:
            resp = await send_message(ua, d.member, doc.encode(), CONTENT_TYPE, timeout=timeout)
            status, warning = resp.status, resp.headers.get("Warning") or ""
        except (SipError, TimeoutError, OSError) as exc:
            status, warning = 0, f"no answer: {exc.__class__.__name__}"
        log.info("group key %08x to %s: %s", d.gmk.gmk_id, d.member, status)
        results.append(Result(d.member, d.gmk.gmk_id, status, warning))
    return results


async def deliver_registered(ua_config: UAConfig, signer: GmsSigner, deliveries: list[Delivery], *,
                             clock: Callable[[], float] = time.time, timeout: float = 32.0) -> list[Result]:
    """Register as the GMS identity, deliver, unregister (the CLI's path)."""
    async with UserAgent(ua_config) as ua:
        await ua.register()
        try:
            return await deliver(ua, signer, deliveries, clock=clock, timeout=timeout)
        finally:
            try:
                await ua.unregister()
            except (SipError, OSError):  # leaving: a lost de-REGISTER expires on its own
                pass
