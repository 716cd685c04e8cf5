"""``softphone-kms``: create a community, manage users, serve TS 33.180 over HTTPS, audit.

Every failure a user can cause is one line on stderr and a non-zero exit (1 refused, 2 usage).
The master passphrase comes from ``--passphrase-file`` (0600) or ``$SOFTPHONE_KMS_PASSPHRASE``.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import NoReturn

from kms.audit import AuditError, AuditLog
from kms.store import StoreError
from kmsinterface.sealed import SecretsError, read_passphrase, write_private
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
    from kms.issue import init_community

    c = init_community(args.dir, args.uri, _passphrase(args), period=args.period, offset=args.offset, db=args.db)
    print(f"created KMS community {c.kms_uri} in {c.directory} "
          f"(period {c.user_key_period} s, offset {c.user_key_offset} s)")
    return 0


def cmd_user_add(args: argparse.Namespace) -> int:
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
    from kms.server import KmsHttpsServer, self_signed_certificate, tls_context

    host, sep, port_text = args.listen.rpartition(":")
    host = host.strip("[]")
    if not sep or not host or not port_text.isdigit() or int(port_text) > 65535:
        raise KmsError("--listen must be HOST:PORT")
    if (args.cert is None) != (args.key is None):
        raise KmsError("give both --cert and --key, or neither (a self-signed certificate is created)")
    issuer = _issuer(args)
    cert, key = (args.cert, args.key) if args.cert else self_signed_certificate(Path(args.dir), [host, "localhost"])
    try:
        server = KmsHttpsServer((host, int(port_text)), issuer, tls_context(cert, key))
    except OSError as exc:
        issuer.close()
        raise KmsError(f"cannot listen on {args.listen}: {exc.strerror or exc}") from None
    issuer.audit.append("master.unseal", purpose="serve")
    bound_host, bound_port = str(server.server_address[0]), server.server_address[1]
    shown = f"[{bound_host}]" if ":" in bound_host else bound_host
    print(f"serving https://{shown}:{bound_port}/keymanagement/identity/v1 (certificate {cert})", flush=True)
    stop = threading.Event()

    def _stop(signum: int, frame: object) -> None:
        if not stop.is_set():
            stop.set()
            threading.Thread(target=server.shutdown, daemon=True).start()

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    try:
        server.serve_forever(poll_interval=0.2)
    finally:
        server.server_close()
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


def cmd_audit_verify(args: argparse.Namespace) -> int:
    result = AuditLog(Path(args.dir) / AUDIT_NAME).verify()
    print(f"audit log intact: {result.lines} records, head {result.head[:16]}")
    return 0


def cmd_audit_export(args: argparse.Namespace) -> int:
    from kms.audit import pseudonym
    from kms.issue import CONFIG, SQLITE, KmsError
    from kms.store import open_store

    config = json.loads((Path(args.dir) / CONFIG).read_text())
    store = open_store(args.db or config.get("db") or Path(args.dir) / SQLITE)
    try:
        user = store.get_user(args.user)
    finally:
        store.close()
    if user is None:
        raise KmsError(f"no user {args.user} (an erased user's records are no longer linkable)")
    records = AuditLog(Path(args.dir) / AUDIT_NAME).export(pseudonym(user.salt, user.uri))
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
    """The log as a table (or JSON lines); URIs instead of pseudonyms only after unsealing the master."""
    from kms.audit import pseudonym, render_table, reveal, select
    from kms.issue import KmsError

    since = _since(args.since)
    records = AuditLog(Path(args.dir) / AUDIT_NAME).records()  # verifies the chain first
    user_ref, names = None, None
    by_uri = args.user is not None and ":" in args.user
    if args.reveal or by_uri:
        issuer = _issuer(args)  # unseals the master: only an operator with the passphrase links records to URIs
        try:
            users = issuer.store.list_users()
        finally:
            issuer.close()
        names = {pseudonym(u.salt, u.uri): u.uri for u in users}
        if by_uri:
            user_ref = next((ref for ref, uri in names.items() if uri == args.user), None)
            if user_ref is None:
                raise KmsError(f"no user {args.user} (an erased user's records are no longer linkable)")
    elif args.user is not None:
        user_ref = args.user
    chosen = select(records, since=since, user_ref=user_ref, events=args.event or ())
    if names is not None and args.reveal:
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
    p = audit.add_parser("verify", parents=[common], help="check the hash chain")
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
    p = audit.add_parser("export", parents=[common], help="records about one user (GDPR Art. 15)")
    p.add_argument("--user", required=True)
    p.set_defaults(func=cmd_audit_export)
    return parser


def main(argv: list[str] | None = None) -> int:
    from kms.issue import KmsError

    parser = build_parser()
    args = parser.parse_args(argv)
    func = getattr(args, "func", None)
    if func is None:
        parser.print_help(sys.stderr)
        return 2
    try:
        return int(func(args) or 0)
    except (KmsError, SecretsError, StoreError, AuditError, KmsXmlError) as exc:
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
