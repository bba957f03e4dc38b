"""`python -m sweeper [-m] [overrides]`: check every job, then let Hydra run them."""
from __future__ import annotations

import shlex
import signal
import sys


def _terminate(signum, frame):
    raise KeyboardInterrupt(f"signal {signum}")  # SIGTERM takes Ctrl-C's path: trial failed, retry queued


def main() -> None:
    signal.signal(signal.SIGTERM, _terminate)
    signal.signal(signal.SIGINT, signal.default_int_handler)  # even where a shell started us ignoring it
    from sweeper.cli import preflight, quote_space, sweep
    from sweeper.config import ConfigError

    sys.argv[1:] = quote_space(sys.argv[1:])  # Hydra reads sys.argv
    argv = sys.argv[1:]
    try:
        if "mode=status" in argv:
            from sweeper.results.status import writing_nothing

            sys.argv += writing_nothing(argv)
        preflight(argv)
        sweep()
    except ConfigError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt:
        print(f"\ninterrupted; resume with: python -m sweeper {shlex.join(argv)}", file=sys.stderr)
        sys.exit(130)


if __name__ == "__main__":
    main()
