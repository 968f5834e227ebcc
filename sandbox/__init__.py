"""Local multi-region sandbox: control planes, Pub/Sub emulator, stand-ins."""
