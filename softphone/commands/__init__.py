"""Subcommands of the ``softphone`` CLI, one module per command group.

Each module defines ``register(subparsers) -> None``, adding its parser(s) with
``set_defaults(func=handler)``; a handler takes the parsed ``argparse.Namespace`` and returns
an exit code (0 ok, 1 rejected/failed, 2 usage error). Modules are discovered by
:data:`COMMAND_MODULES` so that no module has to edit another's file.
"""

COMMAND_MODULES = (
    "mikey",    # softphone mikey inspect|create          (issue 3)
    "keys",     # softphone keys fetch|import|list         (issue 4)
    "devices",  # softphone devices                        (issue 5)
    "call",     # softphone register|call|answer|interactive (issue 7)
    "gui",      # softphone gui                            (issue 8)
)
