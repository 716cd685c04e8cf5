"""``softphone analyze CAPTURE``: the interop tester's capture analyser (see docs/ANALYZER.md).

Reads a pcap/pcapng, rebuilds the SIP ladder (UDP, TCP), verifies every ``a=key-mgmt:mikey`` with
the given KMS XML (the contract and error words of ``softphone mikey inspect``), decrypts the SRTP
streams, writes one WAV per stream to ``--out`` and reports text, ``--json`` or an HTML page.
Exit 0 analysed (whatever the findings), 2 usage error or unreadable capture.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from softphone.analyze import KeyRing, analyse
from softphone.analyze.pcap import CaptureError
from softphone.analyze.report import text, to_json
from softphone.analyze.tls import KeyLogError
from softphone.calls.profile import ProfileError, load_profile
from softphone.cli import CliError
from softphone.cli.mikey import _load_key_sets, _load_kms


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("analyze", help="analyse a capture: SIP ladder, I_MESSAGEs verified, SRTP to audio")
    p.add_argument("capture", type=Path, help="pcap or pcapng file")
    p.add_argument("--kms-init", type=Path, action="append", default=[],
                   help="KmsInit response XML (a KMS certificate; repeatable)")
    p.add_argument("--keyprov", type=Path, action="append", default=[],
                   help="KmsKeyProv XML of a party of the call (repeatable, any users)")
    p.add_argument("--keylog", type=Path, help="TLS key log (NSS SSLKEYLOGFILE format) for SIP over TLS 1.2/1.3")
    p.add_argument("--profile", help="judge the calls against this profile (name or TOML file, e.g. securechorus)")
    p.add_argument("--out", type=Path, help="directory for the WAV files and report.html")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.add_argument("--show-secrets", action="store_true", help="with --json: include keys and SRTP master keys")
    p.set_defaults(func=cmd_analyze)


def _ring(args: argparse.Namespace) -> KeyRing:
    if args.keyprov and not args.kms_init:
        raise CliError("--keyprov needs --kms-init (the KMS certificate)", 2)
    if args.kms_init and not args.keyprov:
        raise CliError("--kms-init needs --keyprov (a party's key sets) to verify", 2)
    ring = KeyRing()
    kms_by_uri = {k.kms_uri: k for k in (_load_kms(p) for p in args.kms_init)}
    for path in args.keyprov:
        last: CliError | None = None
        for kms in kms_by_uri.values():
            try:
                ring.add(_load_key_sets([path], kms))
                last = None
                break
            except CliError as exc:
                last = exc
        if last is not None:
            raise last
    return ring


def cmd_analyze(args: argparse.Namespace) -> int:
    ring = _ring(args)
    profile = None
    if args.profile is not None:
        try:
            profile = load_profile(args.profile)
        except ProfileError as exc:
            raise CliError(str(exc), 2) from None
    try:
        result = analyse(args.capture, ring, args.out, args.keylog, profile)
    except (CaptureError, KeyLogError) as exc:
        raise CliError(str(exc), 2) from None
    if args.out is not None:
        from softphone.analyze.html import write_html

        write_html(result, args.out / "report.html")
    if args.json:
        print(json.dumps(to_json(result, args.show_secrets)))
    else:
        print(text(result), end="")
        if args.out is not None:
            print(f"report {args.out / 'report.html'}")
    return 0
