"""`python -m sweeper --help`: the config groups a command line selects and their options, for
conf/hydra/help/sweeper.yaml. Hydra's own list ($APP_CONFIG_GROUPS) also shows the schemas that
sweeper/config.py registers in each group (task_schema, ...), which are no options."""
from __future__ import annotations

GROUPS = ("task", "model", "optimizer", "search", "pruner", "hydra/launcher")  # in the order of the data flow


def config_groups() -> str:
    """One line per group: `task: cola, mnli, ...`, from Hydra's config search path (conf/ and plugins)."""
    from hydra.core.global_hydra import GlobalHydra

    from sweeper.config import choices

    hydra = GlobalHydra.instance()
    lines = []
    for group in GROUPS:
        options = (hydra.config_loader().get_group_options(group) if hydra.is_initialized()
                   else choices(group))
        lines.append(f"{group}: {', '.join(sorted(o for o in options if not o.endswith('_schema')))}")
    return "\n".join(lines)
