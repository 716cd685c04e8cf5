"""GMK I_MESSAGEs (TS 33.180 §5.7, GROUP-MESSAGING.md §1.1): SAKKE to the member, ECCSI-signed by the GMS,
CSB ID = the member's GUK-ID, the group's one GMK, GMK-ID and RAND, key parameters from the GMS state."""

from __future__ import annotations

from crypto.errors import CryptoError
from crypto.identity import key_period_no, ntp_seconds
from crypto.mikey.build import BuiltMessage, Initiator
from crypto.mikey.keyparams import KeyParameters
from crypto.mikey.keys import KeyType, KmsParams
from gms.errors import GmsError
from gms.state import Delivery
from kmsinterface.groupdoc import GroupDocument
from softphone.keys.errors import KeysError
from softphone.keys.keystore import Keystore


class GmsSigner:
    """The GMS's own identity: its key sets in a keystore, one Initiator per key period."""

    def __init__(self, uri: str, keystore: Keystore | None, initiators: dict[int, Initiator] | None = None) -> None:
        self.uri = uri
        self.keystore = keystore
        self._initiators: dict[int, Initiator] = dict(initiators or {})

    def __repr__(self) -> str:
        return f"GmsSigner({self.uri!r})"

    def initiator_at(self, ntp: int) -> Initiator:
        if self.keystore is None:   # fixed initiators (tests, vectors): the one of that period or refuse
            for n, ini in self._initiators.items():
                if key_period_no(ntp, ini.keys.kms.user_key_period, ini.keys.kms.user_key_offset) == n:
                    return ini
            raise GmsError(f"no GMS signing key for now ({self.uri})")
        try:
            sets = self.keystore.mikey_key_sets(self.uri)
            if not sets:
                raise GmsError(f"the GMS keystore holds no key sets for {self.uri}")
            own = sets[-1].kms
            n = key_period_no(ntp, own.user_key_period, own.user_key_offset)
            if n not in self._initiators:
                self._initiators[n] = Initiator(self.keystore.get(self.uri, n, own.kms_uri).for_mikey())
        except KeysError as exc:
            raise GmsError(f"no GMS signing key for now: {exc}") from None
        return self._initiators[n]

    def build(self, delivery: Delivery, now: float, receiver_kms: KmsParams | None = None) -> BuiltMessage:
        g = delivery.gmk
        params = KeyParameters(int(KeyType.GMK), g.status, g.activation, g.expiry, g.text,
                               delivery.group.uri.encode("utf-8"))
        ntp = ntp_seconds(now)
        try:
            return self.initiator_at(ntp).build(delivery.member, receiver_kms=receiver_kms, key_type=KeyType.GMK,
                                                key=g.gmk, key_id=g.gmk_id, rand=g.rand, ntp_time=ntp,
                                                key_parameters=params)
        except CryptoError as exc:
            raise GmsError(f"cannot build the GMK message for {delivery.member}: {exc}") from None

    def document(self, delivery: Delivery, now: float, receiver_kms: KmsParams | None = None) -> GroupDocument:
        built = self.build(delivery, now, receiver_kms)
        return GroupDocument(delivery.group.uri, self.uri, delivery.gmk.members, built.data)
