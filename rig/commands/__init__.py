"""rig's subcommands, one module each (discovered by rig.cli)."""
