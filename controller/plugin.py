"""The `kubectl modelrollout` plugin. Its verbs arrive with the plugin issue."""

from __future__ import annotations

import sys


def main(argv: list[str] | None = None) -> int:
    print("kubectl modelrollout: not yet (the plugin arrives with its own issue)", file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main())
