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
    from sweeper.cli import preflight, quote_space, sweep
    from sweeper.errors import ConfigError
    from sweeper.redact import mask, move_passwords
    from sweeper.study.patience import StorageUnreachable

    argv = sys.argv[1:]  # as given; shown masked
    # Before Hydra records the command anywhere (it reads sys.argv): passwords moved out, the space's grammar quoted.
    sys.argv[1:] = quote_space(move_passwords(argv))
    try:
        if "mode=status" in argv:
            from sweeper.results.status import writing_nothing

            sys.argv += writing_nothing(argv)
        preflight(sys.argv[1:])
        sweep()
    except ConfigError as e:
        print(f"error: {mask(str(e))}", file=sys.stderr)
        sys.exit(2)
    except StorageUnreachable as e:  # the preflight waited study.storage_patience for a server not up
        print(f"error: {e}; resume with: python -m sweeper {mask(shlex.join(argv))}", file=sys.stderr)
        sys.exit(5)
    except KeyboardInterrupt as e:
        print(f"\n{preemption.stopped(str(e) or 'interrupted')}; resume with: python -m sweeper "
              f"{mask(shlex.join(argv))}", file=sys.stderr)
        sys.exit(130)


if __name__ == "__main__":
    main()
