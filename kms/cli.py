"""``softphone-kms``: create a community, manage users, serve TS 33.180 over HTTPS, audit.

Every failure a user can cause is one line on stderr and a non-zero exit (1 refused, 2 usage).
The master passphrase comes from ``--passphrase-file`` (0600) or ``$SOFTPHONE_KMS_PASSPHRASE``.
"""

from __future__ import annotations

import argparse
import json
import re
import signal
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import NoReturn

from kms.audit import AuditError, AuditLog
from kms.store import StoreError
from kmsinterface.sealed import SecretsError, check_passphrase_strength, read_passphrase, write_private
from kmsinterface.xml import KmsXmlError

AUDIT_NAME = "audit.log"


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message}\n")


def _passphrase(args: argparse.Namespace) -> bytes:
    return read_passphrase(args.passphrase_file)


def _issuer(args: argparse.Namespace):  # -> kms.issue.Issuer
    from kms.issue import Issuer, open_community

    return Issuer(open_community(args.dir, _passphrase(args), args.db))


def _parse_time(text: str | None) -> datetime | None:
    if text is None:
        return None
    try:
        value = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise SecretsError(f"--time {text!r} is not an ISO 8601 date/time") from None
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def cmd_init(args: argparse.Namespace) -> int:
    from kms.audit import DbAuditLog, audit_key
    from kms.issue import CONFIG, KmsError, init_community

    if args.audit_in_db and not (args.db or "").startswith(("postgresql://", "postgres://")):
        raise KmsError("--audit-in-db needs --db postgresql://…")
    passphrase = _passphrase(args)
    check_passphrase_strength(passphrase, "KMS master passphrase")
    c = init_community(args.dir, args.uri, passphrase, period=args.period, offset=args.offset, db=args.db)
    if args.audit_in_db:
        key = audit_key(c)
        file_log = AuditLog(Path(args.dir) / AUDIT_NAME, key)
        file_log.verify()
        db_log = DbAuditLog(c.db, key)
        try:
            db_log.import_lines(file_log.path.read_bytes().splitlines())
        finally:
            db_log.close()
        config = json.loads((Path(args.dir) / CONFIG).read_text())
        config["audit"] = "postgresql"
        write_private(Path(args.dir) / CONFIG, json.dumps(config, indent=1).encode())
        file_log.path.unlink()
        file_log.head_path.unlink()
    print(f"created KMS community {c.kms_uri} in {c.directory} "
          f"(period {c.user_key_period} s, offset {c.user_key_offset} s)")
    return 0


#: What the phone accepts as an identity (softphone.config): sip: or sips:, a user part and a domain.
_USER_URI = re.compile(r"^sips?:[^@\s:;]+@[^@\s;]+$")


class UsageError(Exception):
    """A malformed argument: one line, exit 2."""


def _user_uri(uri: str) -> str:
    if not _USER_URI.match(uri):
        raise UsageError(f"{uri!r} is not a user identity: give a SIP URI such as sip:alice@example.org")
    return uri


def cmd_user_add(args: argparse.Namespace) -> int:
    _user_uri(args.uri)
    if args.transport_key and not args.trk_out:
        raise SecretsError("--transport-key needs --trk-out FILE to hand the key over out of band")
    issuer = _issuer(args)
    try:
        new = issuer.add_user(args.uri, transport_key=args.transport_key)
    finally:
        issuer.close()
    if args.trk_out and new.transport_key:
        write_private(args.trk_out, f"{new.transport_key.key_id} {new.transport_key.key.hex()}\n".encode())
    if args.token_out:
        write_private(args.token_out, (new.token + "\n").encode())
        print(f"added {new.uri}; bearer token written to {args.token_out}")
    else:
        print(new.token)
    return 0


def cmd_user_list(args: argparse.Namespace) -> int:
    issuer = _issuer(args)
    try:
        for user in issuer.store.list_users():
            periods = issuer.store.count_keysets(user.uri)
            trk = f"\ttrk={user.trk_id}" if user.trk_id else ""
            print(f"{user.uri}\t{user.status}\tkeysets={periods}{trk}\tcreated={user.created}")
    finally:
        issuer.close()
    return 0


def cmd_user_revoke(args: argparse.Namespace) -> int:
    issuer = _issuer(args)
    try:
        issuer.revoke(args.uri)
    finally:
        issuer.close()
    print(f"revoked {args.uri}")
    return 0


def cmd_user_erase(args: argparse.Namespace) -> int:
    issuer = _issuer(args)
    try:
        ref = issuer.erase(args.uri)
    finally:
        issuer.close()
    print(f"erased {args.uri}; audit records remain under pseudonym {ref}")
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    from kms.issue import KmsError
    from kms.server import KmsServer, Limits, raise_fd_limit, self_signed_certificate, tls_context

    host, sep, port_text = args.listen.rpartition(":")
    host = host.strip("[]")
    if not sep or not host or not port_text.isdigit() or int(port_text) > 65535:
        raise KmsError("--listen must be HOST:PORT")
    if (args.cert is None) != (args.key is None):
        raise KmsError("give both --cert and --key, or neither (a self-signed certificate is created)")
    if args.deadline <= 0 or args.workers < 1 or args.max_connections < 1 or args.max_per_client < 0:
        raise KmsError("--deadline, --workers and --max-connections must be positive, --max-per-client >= 0")
    fds = raise_fd_limit(args.max_connections + 64)
    limits = Limits(deadline=args.deadline, max_connections=min(args.max_connections, max(fds - 64, 1)),
                    max_per_client=args.max_per_client, workers=args.workers, max_pending=args.max_pending)
    issuer = _issuer(args)
    cert, key = (args.cert, args.key) if args.cert else self_signed_certificate(Path(args.dir), [host, "localhost"])
    server = KmsServer(issuer, tls_context(cert, key), limits)
    try:
        bound = server.bind(host, int(port_text), reuse_port=args.reuse_port)
    except OSError as exc:
        server.close()
        issuer.close()
        raise KmsError(f"cannot listen on {args.listen}: {exc.strerror or exc}") from None
    issuer.audit.append("master.unseal", purpose="serve")
    shown = f"[{bound[0]}]" if ":" in bound[0] else bound[0]
    print(f"serving https://{shown}:{bound[1]}/keymanagement/identity/v1 (certificate {cert})", flush=True)

    def _stop(signum: int, frame: object) -> None:
        server.stop()

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    try:
        server.run()
    finally:
        server.close()
        issuer.close()
    return 0


def cmd_export_init(args: argparse.Namespace) -> int:
    from kmsinterface.xml import KmsInitResponse, serialise_kms_init

    issuer = _issuer(args)
    try:
        c = issuer.community
        data = serialise_kms_init(KmsInitResponse(args.user or "", c.kms_uri, datetime.now(UTC),
                                                  c.certificate(), "offline:export-init"))
    finally:
        issuer.close()
    Path(args.out).write_bytes(data)
    print(f"wrote KmsInit for {c.kms_uri} to {args.out}")
    return 0


def cmd_export_cert(args: argparse.Namespace) -> int:
    from kmsinterface.xml import serialise_kms_certificate

    issuer = _issuer(args)
    try:
        data = serialise_kms_certificate(issuer.community.certificate(role="External"))
    finally:
        issuer.close()
    Path(args.out).write_bytes(data)
    print(f"wrote external KMS certificate to {args.out}")
    return 0


def cmd_provision(args: argparse.Namespace) -> int:
    from kms.issue import KmsError
    from kmsinterface.xml import KeyProvResponse, serialise_key_prov

    when = _parse_time(args.time)
    issuer = _issuer(args)
    try:
        user = issuer.store.get_user(args.user)
        if user is None:
            raise KmsError(f"no user {args.user}")
        if user.status != "active":
            raise KmsError(f"user {args.user} is revoked")
        sets = issuer.provision(user, when, window=False)
        c = issuer.community
        data = serialise_key_prov(
            KeyProvResponse(user.uri, c.kms_uri, datetime.now(UTC), sets, "offline:provision"),
            issuer.transport_key(user))
    finally:
        issuer.close()
    write_private(args.out, data)
    print(f"wrote key sets for periods {', '.join(str(s.key_period_no) for s in sets)} to {args.out}")
    return 0


def _audit_log(args: argparse.Namespace) -> AuditLog:
    """The community's audit log with its MAC key (unsealing the master needs the passphrase)."""
    from kms.audit import audit_key, open_audit
    from kms.issue import open_community

    community = open_community(args.dir, _passphrase(args), args.db)
    return open_audit(args.dir, community.db, audit_key(community))


def cmd_audit_verify(args: argparse.Namespace) -> int:
    head = None
    if args.head:
        try:
            head = json.loads(Path(args.head).read_text())
        except ValueError:
            raise AuditError(f"{args.head} is not an exported audit head") from None
    result = _audit_log(args).verify(head)
    anchored = f", contains exported head at record {result.anchored}" if head is not None else ""
    print(f"audit log intact: {result.lines} records, head {result.head[:16]}{anchored}")
    return 0


def cmd_audit_export_head(args: argparse.Namespace) -> int:
    head = _audit_log(args).export_head()
    text = json.dumps(head, indent=1) + "\n"
    if args.out:
        Path(args.out).write_text(text)
        print(f"wrote audit head (record {head['seq']}) to {args.out}; keep a copy away from the KMS")
    else:
        sys.stdout.write(text)
    return 0


def cmd_audit_export(args: argparse.Namespace) -> int:
    from kms.audit import pseudonym
    from kms.issue import CONFIG, SQLITE, KmsError
    from kms.store import open_store

    if (args.uri is None) == (args.user_option is None):
        raise UsageError("give the user's URI: audit export --dir DIR URI")
    args.user = args.uri or args.user_option
    log = _audit_log(args)
    config = json.loads((Path(args.dir) / CONFIG).read_text())
    store = open_store(args.db or config.get("db") or Path(args.dir) / SQLITE)
    try:
        user = store.get_user(args.user)
    finally:
        store.close()
    if user is None:
        raise KmsError(f"no user {args.user} (an erased user's records are no longer linkable)")
    records = log.export(pseudonym(user.salt, user.uri))
    print(json.dumps({"user": user.uri, "status": user.status, "created": user.created, "records": records}, indent=1))
    return 0


def _since(text: str | None) -> datetime | None:
    """``--since``: an ISO 8601 date/time (UTC unless it says) or an age such as ``30m``, ``12h``, ``7d``."""
    if text is None:
        return None
    units = {"s": 1, "m": 60, "h": 3600, "d": 86400}
    if text[-1:] in units and text[:-1].isdigit():
        return datetime.now(UTC) - timedelta(seconds=int(text[:-1]) * units[text[-1]])
    try:
        value = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise SecretsError(f"--since {text!r} is neither an ISO 8601 date/time nor an age like 12h or 7d") from None
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def cmd_audit_show(args: argparse.Namespace) -> int:
    """The log as a table (or JSON lines). With the passphrase the MAC chain is verified first; URIs
    instead of pseudonyms (``--reveal``, ``--user URI``) only then: only the operator links records to people."""
    import os

    from kms.audit import audit_key, open_audit, pseudonym, render_table, reveal, select
    from kms.issue import CONFIG, SQLITE, KmsError, open_community
    from kms.store import open_store
    from kmsinterface.sealed import PASSPHRASE_ENV

    since = _since(args.since)
    by_uri = args.user is not None and ":" in args.user
    unlocked = bool(args.passphrase_file or os.environ.get(PASSPHRASE_ENV))
    if (args.reveal or by_uri) and not unlocked:
        raise SecretsError("showing URIs needs the master passphrase: give --passphrase-file or set "
                           f"{PASSPHRASE_ENV}")
    names: dict[str, str] | None = None
    if unlocked:
        community = open_community(args.dir, _passphrase(args), args.db)  # a wrong passphrase stops here
        log = open_audit(args.dir, community.db, audit_key(community))
        store = open_store(community.db)
        try:
            names = {pseudonym(u.salt, u.uri): u.uri for u in store.list_users()}
        finally:
            store.close()
    else:
        config = json.loads((Path(args.dir) / CONFIG).read_text())
        log = open_audit(args.dir, args.db or config.get("db") or str(Path(args.dir) / SQLITE), None)
        print("softphone-kms: MAC chain not verified (no passphrase): sequence numbers checked only",
              file=sys.stderr)
    try:
        records = log.records()
    finally:
        close = getattr(log, "close", None)
        if close is not None:
            close()
    user_ref = args.user
    if by_uri:
        assert names is not None
        user_ref = next((ref for ref, uri in names.items() if uri == args.user), None)
        if user_ref is None:
            raise KmsError(f"no user {args.user} (an erased user's records are no longer linkable)")
    chosen = select(records, since=since, user_ref=user_ref, events=args.event or ())
    if args.reveal and names is not None:
        chosen = reveal(chosen, names)
    try:
        if args.json:
            for r in chosen:
                print(json.dumps(r, ensure_ascii=False))
        elif chosen:
            sys.stdout.write(render_table(chosen))
        else:
            print("no matching audit records", file=sys.stderr)
        sys.stdout.flush()
    except BrokenPipeError:  # `audit show | head`
        sys.stderr.close()
    return 0


# --- groups (the GMS, gms/) ---------------------------------------------------------------------------
def _group_run(args: argparse.Namespace, action: str) -> int:
    """Change the GMS's group state, audit it in this community's log, deliver the new keys over SIP."""
    import asyncio
    import time

    from gms import store as gms_store
    from gms.config import load_gms
    from gms.keys import GmsSigner
    from gms.service import deliver_registered
    from kms.audit import pseudonym
    from kms.issue import KmsError

    now = int(time.time())
    when = _parse_time(getattr(args, "activation", None))
    activation = None if when is None else int(when.timestamp())
    cfg = load_gms(args.gms, args.gms_account, fetch_keys=not args.no_deliver)
    state = gms_store.load(cfg.state_path, cfg.passphrase)
    if action == "create":
        deliveries = state.create(args.uri, args.member, now, lifetime=args.lifetime, text=args.text,
                                  activation=activation)
    elif action == "add":
        deliveries = state.add(args.uri, args.member, now)
    elif action == "remove":
        deliveries = state.remove(args.uri, args.member, now, activation=activation, lifetime=args.lifetime)
    else:
        deliveries = state.rekey(args.uri, now, activation=activation, lifetime=args.lifetime)
    gms_store.save(cfg.state_path, state, cfg.passphrase)
    issuer = _issuer(args)
    try:
        def ref(uri: str) -> str:
            user = issuer.store.get_user(uri)
            return pseudonym(user.salt, uri) if user is not None else "not-a-user"

        gmk = deliveries[0].gmk
        fields: dict[str, str | int] = {"group": args.uri, "gms": cfg.uri, "gmk_id": f"{gmk.gmk_id:08x}",
                                        "members": len(state.get(args.uri).members), "activation": gmk.activation}
        if action in ("add", "remove"):
            fields["user"] = ref(args.member)
        issuer.audit.append(f"group.{action}", **fields)
        if action == "remove":
            issuer.audit.append("group.rekey", group=args.uri, gms=cfg.uri, gmk_id=f"{gmk.gmk_id:08x}",
                                members=len(deliveries), activation=gmk.activation, reason="member removed")
        results = []
        if not args.no_deliver:
            signer = GmsSigner(cfg.uri, cfg.keystore)
            results = asyncio.run(deliver_registered(cfg.ua_config(), signer, deliveries, timeout=args.timeout))
            for r in results:
                issuer.audit.append("group.deliver", group=args.uri, gmk_id=f"{r.gmk_id:08x}", user=ref(r.member),
                                    status=r.status, refused=bool(r.warning))
    finally:
        issuer.close()
    print(f"{action} {args.uri}: GMK {gmk.gmk_id:08x} for {len(deliveries)} member(s)")
    failed = [r for r in results if not r.ok]
    for r in results:
        print(f"  {r.member}: {r.status}{' ' + r.warning if r.warning else ''}")
    if failed:
        raise KmsError(f"{len(failed)} of {len(results)} group-key deliveries failed: "
                       + ", ".join(f"{r.member} ({r.status})" for r in failed))
    return 0


def cmd_group_list(args: argparse.Namespace) -> int:
    import json
    import time

    from gms import store as gms_store
    from gms.config import load_gms

    cfg = load_gms(args.gms, args.gms_account, fetch_keys=False)
    state = gms_store.load(cfg.state_path, cfg.passphrase)
    now = time.time()
    for _, group in sorted(state.groups.items()):
        pub = group.public(now)
        if args.json:
            print(json.dumps(pub))
            continue
        print(f"{group.uri}  {len(group.members)} member(s): {', '.join(group.members)}")
        for g in pub["gmks"]:
            when = datetime.fromtimestamp(g["activation"], UTC).strftime("%Y-%m-%d %H:%M:%S")
            exp = (datetime.fromtimestamp(g["expiry"], UTC).strftime("%Y-%m-%d %H:%M:%S") if g["expiry"]
                   else "no expiry")
            print(f"  GMK {g['gmk_id']}  from {when}  {exp}  {'current' if g['current'] else ''}".rstrip())
    if not state.groups:
        print("no groups", file=sys.stderr)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="softphone-kms", description="Secure Chorus Key Management Server (3GPP TS 33.180)")
    common = _Parser(add_help=False)
    common.add_argument("--dir", required=True, help="community directory")
    common.add_argument("--db", help="postgresql://… URL (default: SQLite file in --dir)")
    common.add_argument("--passphrase-file", help="file (0600) holding the master passphrase "
                        "(default: $SOFTPHONE_KMS_PASSPHRASE)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)

    p = sub.add_parser("init", parents=[common], help="create a community (SAKKE and ECCSI master keys)")
    p.add_argument("--uri", required=True, help="KMS URI (enters every user's UID)")
    p.add_argument("--period", type=int, default=2592000, help="user key period, seconds (default 30 days)")
    p.add_argument("--offset", type=int, default=0, help="user key period offset, seconds")
    p.add_argument("--audit-in-db", action="store_true",
                   help="keep the audit log in the PostgreSQL database (KMS processes on several hosts)")
    p.set_defaults(func=cmd_init)

    user = sub.add_parser("user", help="manage users").add_subparsers(dest="user_cmd", metavar="ACTION",
                                                                        parser_class=_Parser, required=True)
    p = user.add_parser("add", parents=[common], help="add a user and issue its bearer token")
    p.add_argument("uri")
    p.add_argument("--token-out", help="write the bearer token to this file (0600) instead of stdout")
    p.add_argument("--transport-key", action="store_true", help="also create a transport key (TrK)")
    p.add_argument("--trk-out", help="file (0600) receiving 'KEY_ID HEX' of the TrK")
    p.set_defaults(func=cmd_user_add)
    for name, func, text in (("list", cmd_user_list, "list users"), ("revoke", cmd_user_revoke, "revoke a user"),
                             ("erase", cmd_user_erase, "erase a user's data and keys (GDPR Art. 17)")):
        p = user.add_parser(name, parents=[common], help=text)
        if name != "list":
            p.add_argument("uri")
        p.set_defaults(func=func)

    p = sub.add_parser("serve", parents=[common], help="serve the TS 33.180 interface over HTTPS")
    p.add_argument("--listen", required=True, help="HOST:PORT (port 0 picks a free port)")
    p.add_argument("--cert", type=Path, help="PEM certificate chain")
    p.add_argument("--key", type=Path, help="PEM private key")
    p.add_argument("--deadline", type=float, default=10.0,
                   help="seconds from accept to a complete request (TLS handshake + headers + body), "
                        "and again for each further request on a connection (default 10)")
    p.add_argument("--max-connections", type=int, default=4096, help="open connections in all (default 4096)")
    p.add_argument("--max-per-client", type=int, default=64,
                   help="open connections per client address; 0 = no limit, e.g. behind nginx (default 64)")
    p.add_argument("--workers", type=int, default=4, help="threads issuing keys and writing the database "
                   "(default 4)")
    p.add_argument("--max-pending", type=int, default=256, help="requests waiting for a worker before 503 "
                   "(default 256)")
    p.add_argument("--reuse-port", action="store_true",
                   help="SO_REUSEPORT: several KMS processes share one listening port")
    p.set_defaults(func=cmd_serve)

    p = sub.add_parser("export-init", parents=[common], help="write a KmsInit XML file (offline KMS)")
    p.add_argument("--out", required=True)
    p.add_argument("--user", help="UserUri to put in the response")
    p.set_defaults(func=cmd_export_init)
    p = sub.add_parser("export-cert", parents=[common], help="write this KMS's certificate for other domains")
    p.add_argument("--out", required=True)
    p.set_defaults(func=cmd_export_cert)
    p = sub.add_parser("provision", parents=[common], help="write a KmsKeyProv XML file for a user (offline KMS)")
    p.add_argument("--user", required=True)
    p.add_argument("--time", help="ISO 8601 time in the wanted key period (default now; also the next)")
    p.add_argument("--out", required=True)
    p.set_defaults(func=cmd_provision)

    audit = sub.add_parser("audit", help="audit log").add_subparsers(dest="audit_cmd", metavar="ACTION",
                                                                      parser_class=_Parser, required=True)
    p = audit.add_parser("verify", parents=[common], help="check the MAC chain")
    p.add_argument("--head", help="an exported head (audit export-head): also detect truncation and rewrites")
    p.set_defaults(func=cmd_audit_verify)
    p = audit.add_parser("show", parents=[common], help="the log as a readable table (users by pseudonym)",
                         description="Print audit records as a table. Users appear by pseudonym; --reveal (or "
                                     "--user URI) unseals the master with the passphrase to show URIs.")
    p.add_argument("--since", help="ISO 8601 date/time, or an age: 30m, 12h, 7d")
    p.add_argument("--user", help="only records about this user: a pseudonym, or a URI (needs the passphrase)")
    p.add_argument("--event", action="append", help="only this event, or family (key = key.issue, key.provision); "
                                                   "repeatable")
    p.add_argument("--reveal", action="store_true", help="show URIs instead of pseudonyms (needs the passphrase)")
    p.add_argument("--json", action="store_true", help="one JSON record a line instead of the table")
    p.set_defaults(func=cmd_audit_show)
    p = audit.add_parser("export-head", parents=[common], help="write the MACed head to store away from the KMS")
    p.add_argument("--out", help="file to write (default: stdout)")
    p.set_defaults(func=cmd_audit_export_head)
    p = audit.add_parser("export", parents=[common], help="records about one user (GDPR Art. 15)")
    p.add_argument("uri", nargs="?", help="the user, as in 'user add URI'")
    p.add_argument("--user", dest="user_option", help=argparse.SUPPRESS)  # the older spelling
    p.set_defaults(func=cmd_audit_export)

    gcommon = _Parser(add_help=False)
    gcommon.add_argument("--gms", required=True, help="the GMS's accounts file (its SIP account, keystore, KMS)")
    gcommon.add_argument("--gms-account", help="account name in that file (default: the only one)")
    group = sub.add_parser("group", help="groups and their keys (Group Management Server)").add_subparsers(
        dest="group_cmd", metavar="ACTION", parser_class=_Parser)
    for name, text in (("create", "create a group and send every member its GMK"),
                       ("add", "add a member and send it the current GMK"),
                       ("remove", "remove a member and rekey the others (the removed one gets nothing new)"),
                       ("rekey", "send every member a new GMK")):
        p = group.add_parser(name, parents=[common, gcommon], help=text)
        p.add_argument("uri", help="the group's URI, e.g. sip:team@example.org")
        if name == "create":
            p.add_argument("--member", action="append", required=True, help="a member's URI (repeat)")
            p.add_argument("--text", default="", help="human-readable group name (key parameters)")
        elif name in ("add", "remove"):
            p.add_argument("member", help="the member's URI")
        if name != "add":
            p.add_argument("--lifetime", type=int, default=0, help="GMK expiry after activation, seconds (0: none)")
            p.add_argument("--activation", help="ISO 8601 activation time of the new GMK (default: now)")
        p.add_argument("--no-deliver", action="store_true", help="change state and audit only; send nothing")
        p.add_argument("--timeout", type=float, default=32.0, help="seconds to wait for each member's answer")
        p.set_defaults(func=lambda a, n=name: _group_run(a, n))
    p = group.add_parser("list", parents=[common, gcommon], help="the GMS's groups, members and GMK-IDs")
    p.add_argument("--json", action="store_true", help="one JSON object a line")
    p.set_defaults(func=cmd_group_list)
    return parser


def main(argv: list[str] | None = None) -> int:
    from gms.errors import GmsError
    from kms.issue import KmsError

    parser = build_parser()
    args = parser.parse_args(argv)
    func = getattr(args, "func", None)
    if func is None:
        parser.print_help(sys.stderr)
        return 2
    try:
        return int(func(args) or 0)
    except UsageError as exc:
        print(f"softphone-kms: {exc}", file=sys.stderr)
        return 2
    except BrokenPipeError:
        return 141
    except (KmsError, SecretsError, StoreError, AuditError, KmsXmlError, GmsError) as exc:
        print(f"softphone-kms: {exc}", file=sys.stderr)
        return 1
    except OSError as exc:
        print(f"softphone-kms: {exc.strerror or exc.__class__.__name__}: {exc.filename or ''}".rstrip(": "),
              file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("softphone-kms: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
