"""``softphone devices``: list the PortAudio audio devices the softphone can capture from / play to."""

from __future__ import annotations

import argparse
import json

from softphone.cli import CliError
from softphone.media.audio import AudioError, list_devices


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("devices", help="list audio input/output devices")
    p.add_argument("--json", action="store_true", help="print one JSON array instead of a table")
    p.set_defaults(func=_devices)


def _devices(args: argparse.Namespace) -> int:
    try:
        devices = list_devices()
    except AudioError as exc:
        raise CliError(str(exc)) from None
    if args.json:
        print(json.dumps(devices))
        return 0
    if not devices:
        print("no audio devices")
        return 0
    for d in devices:
        print(f"{d['index']:>3}  in={d['max_input_channels']:<3} out={d['max_output_channels']:<3} "
              f"{int(d['default_samplerate']):>6} Hz  {d['hostapi']}: {d['name']}")
    return 0
