"""`python -m sweeper [-m] [overrides]`: check every job, then let Hydra run them."""
from __future__ import annotations

import shlex
import signal
import sys


def main() -> None:
    from sweeper.scale import preemption

    # SIGTERM, SIGUSR1/2: a training trial checkpoints within its epoch and stops; otherwise Ctrl-C's path
    # (trial failed, retry queued). Either way exit 130 with the resume command.
    preemption.install()
    signal.signal(signal.SIGINT, signal.default_int_handler)  # even where a shell started us ignoring it
    from sweeper.cli import preflight, sweep
    from sweeper.config import ConfigError

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
    except KeyboardInterrupt as e:
        print(f"\n{preemption.stopped(str(e) or 'interrupted')}; resume with: python -m sweeper {shlex.join(argv)}",
              file=sys.stderr)
        sys.exit(130)


if __name__ == "__main__":
    main()
