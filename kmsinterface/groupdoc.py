"""The group-key document a GMS sends each member in a SIP MESSAGE (shared by the GMS and the phone).

``application/vnd.softphone.group+json``: ``{"v": 1, "group": URI, "gms": URI, "members": [URI…],
"gkt": base64 I_MESSAGE}``. The I_MESSAGE (the GKTP, TS 33.179 §7.3.1) is what carries and protects the
GMK; the rest is the member list the receiver uses to name who is heard. A 3GPP GMS would use the
TS 24.481 group document instead; this is the small equivalent GROUP-MESSAGING.md §1.1 sketches.
"""

from __future__ import annotations

import base64
import binascii
import json
from dataclasses import dataclass

from kmsinterface.errors import KmsInterfaceError

CONTENT_TYPE = "application/vnd.softphone.group+json"
MAX_BODY = 64 * 1024
MAX_MEMBERS = 1000


class GroupDocError(KmsInterfaceError):
    """The body is not a group-key document."""


@dataclass(frozen=True)
class GroupDocument:
    group_uri: str
    gms_uri: str
    members: tuple[str, ...]
    imessage: bytes

    def encode(self) -> bytes:
        return json.dumps({"v": 1, "group": self.group_uri, "gms": self.gms_uri, "members": list(self.members),
                           "gkt": base64.b64encode(self.imessage).decode()}, separators=(",", ":")).encode()

    @classmethod
    def decode(cls, body: bytes) -> GroupDocument:
        if len(body) > MAX_BODY:
            raise GroupDocError(f"group document larger than {MAX_BODY} octets")
        try:
            d = json.loads(body)
            if d.get("v") != 1:
                raise GroupDocError(f"unsupported group document version {d.get('v')!r}")
            members = d["members"]
            if not isinstance(members, list) or len(members) > MAX_MEMBERS or not all(
                    isinstance(m, str) for m in members):
                raise GroupDocError("group document members must be a list of URIs")
            group, gms = d["group"], d["gms"]
            if not isinstance(group, str) or not isinstance(gms, str):
                raise GroupDocError("group document group/gms must be URIs")
            return cls(group, gms, tuple(members), base64.b64decode(d["gkt"], validate=True))
        except GroupDocError:
            raise
        except (ValueError, KeyError, TypeError, AttributeError, binascii.Error):
            raise GroupDocError("not a group-key document (JSON with group, gms, members, gkt)") from None


def is_group_document(content_type: str) -> bool:
    return content_type.split(";")[0].strip().lower() == CONTENT_TYPE
