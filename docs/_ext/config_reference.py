"""The configuration reference, generated: every key of the composed config with its type (from the dataclasses in
sweeper/config.py), its default (from conf/, as written: interpolations unresolved) and its comment (the YAML line
that sets it, else the schema's field). `python docs/_ext/config_reference.py` prints it; the docs build writes it
to docs/_generated/config-reference.md. A key with neither comment is listed by `undocumented()` (a test)."""
from __future__ import annotations

import ast
import dataclasses
import enum
import inspect
import io
import json
import re
import sys
import tokenize
import typing
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from omegaconf import DictConfig, ListConfig, OmegaConf  # noqa: E402

from sweeper import config as schema  # noqa: E402

# Hydra's own instantiation keys: what they mean is Hydra's, the same in every file.
HYDRA_KEYS = {"_target_": "the class or function Hydra instantiates", "_partial_":
              "true: the remaining arguments come at run time (functools.partial)"}
SKIP_GROUPS = {"hydra/help"}  # --help's text, not keys
KEY = re.compile(r"^(?P<indent> *)(?P<key>[A-Za-z_][\w-]*):(?P<rest>(?: .*)?)$")


@dataclass
class Row:
    key: str
    type: str
    default: str
    comment: str


def yaml_comments(path: Path) -> tuple[str, dict[str, str]]:
    """A YAML file's header comment and each key's comment: the one on its line, continued by comment-only lines
    indented past the key (the style of conf/config.yaml); or, with none on its line, the comment lines right above
    it. Keys under `defaults:` are Hydra's and skipped."""
    header, out, stack, above, last, top = [], {}, [], [], None, True
    for line in path.read_text().splitlines():
        stripped = line.strip()
        top = top and stripped.startswith("#")
        if stripped.startswith("#"):
            text = stripped.lstrip("#").strip()
            if text.startswith("@package"):
                continue
            if top:
                header.append(text)
            elif last and line.index("#") > last[1]:
                out[last[0]] = f"{out[last[0]]} {text}".strip()
            else:
                above.append(text)
            continue
        m = KEY.match(line)
        if not m:
            above, last = [], None
            continue
        indent = len(m["indent"])
        while stack and stack[-1][0] >= indent:
            stack.pop()
        stack.append((indent, m["key"]))
        path_ = ".".join(k for _, k in stack)
        value, _, comment = m["rest"].partition(" #")
        if path_.split(".")[0] == "defaults":
            above, last = [], None
            continue
        out[path_] = comment.strip() if comment.strip() else " ".join(above)
        above, last = [], ((path_, indent) if comment.strip() else None)
    return " ".join(header), {k: v for k, v in out.items() if v}


def schema_comments(cls) -> dict[str, str]:
    """Each field's comment in a dataclass's source: on its line, continued by comment-only lines below it."""
    source = inspect.getsource(cls)
    fields = {node.lineno: node.target.id for node in ast.parse(source).body[0].body
              if isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name)}
    out, last = {}, None
    for tok in tokenize.generate_tokens(io.StringIO(source).readline):
        if tok.type != tokenize.COMMENT:
            continue
        line, text = tok.start[0], tok.string.lstrip("#").strip()
        if line in fields:
            last = fields[line]
            out[last] = text
        elif last and tok.line.strip().startswith("#"):
            out[last] = f"{out[last]} {text}"
        else:
            last = None
    return out


def type_name(hint) -> str:
    if isinstance(hint, type) and issubclass(hint, enum.Enum):
        return " | ".join(m.value for m in hint)
    if isinstance(hint, type) and not typing.get_args(hint):
        return hint.__name__
    return str(hint).replace("typing.", "").replace(f"{schema.__name__}.", "").replace("NoneType", "None")


def value_type(value) -> str:
    return "null" if value is None else {bool: "bool", int: "int", float: "float", str: "str", list: "list",
                                         dict: "dict"}.get(type(value), type(value).__name__)


def shown(node) -> str:
    """A default as a command line would write it, interpolations as written."""
    if isinstance(node, (DictConfig, ListConfig)):
        value = OmegaConf.to_container(node, resolve=False, enum_to_str=True)
    else:
        value = node._value()
    if value == "???":
        return "*required*"
    if isinstance(value, enum.Enum):
        value = value.value
    text = value if isinstance(value, str) else json.dumps(value).replace('"', "")
    return f"`{'null' if value is None else text}`" if text != "" else "`''`"


def rows(node: DictConfig, prefix: str, cls, comments: dict[str, str], at: str = "", keys=None,
         option: str | None = None) -> list[Row]:
    """A row per key under `node` (or its `keys`), recursing into sections the schema types, or every mapping
    without a schema; `at` is the key's path inside the YAML file the comments come from. The YAML's comment
    comes before the schema's; for a group's `option` file, after it, saying whose it is (a task file's comment
    says why that task has its value)."""
    hints = typing.get_type_hints(cls) if cls else {}
    fields = schema_comments(cls) if cls else {}
    out = []
    for key in keys or node.keys():
        child, hint = node._get_node(key), hints.get(key)
        sub = hint if dataclasses.is_dataclass(hint) else None
        if isinstance(child, DictConfig) and (sub or (cls is None and key not in HYDRA_KEYS)):
            out += rows(child, f"{prefix}{key}.", sub, comments, f"{at}{key}.", option=option)
        else:
            field, own = fields.get(key), comments.get(f"{at}{key}")
            comment = own or field or HYDRA_KEYS.get(key, "")
            if option and field and own and not own.startswith(field):
                comment = f"{field} ({option}: {own})"
            out.append(leaf(f"{prefix}{key}", child, hint, comment))
    return out


def leaf(key: str, node, hint, comment: str) -> Row:
    if hint is not None:
        kind = type_name(hint)
    elif isinstance(node, (DictConfig, ListConfig)):
        kind = value_type(OmegaConf.to_container(node, resolve=False))
    else:  # an interpolation's type is its target's
        kind = value_type(node._dereference_node()._value() if node._is_interpolation() else node._value())
    return Row(key, kind, shown(node), comment)


def compose(*overrides: str) -> DictConfig:
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir

    schema.register()
    with initialize_config_dir(str(schema.CONF_DIR), version_base="1.3"):
        return hydra_compose("config", overrides=list(overrides), return_hydra_config=True)


def options(group: str) -> list[Path]:
    return sorted(p for p in (schema.CONF_DIR / group).glob("*.yaml"))


def groups(cfg: DictConfig) -> dict[str, type | None]:
    """The config groups conf/ has options for, in the defaults list's order, each with the schema its options
    share (the field of that name in sweeper/config.py's Config, when a dataclass), or None: then each option has
    keys of its own (a pruner's arguments) and is documented on its own."""
    hints = typing.get_type_hints(schema.Config)
    order = [f.name for f in dataclasses.fields(schema.Config)]  # the schema's order; Hydra's own groups last
    found = sorted((g for g in cfg.hydra.runtime.choices if g not in SKIP_GROUPS and options(g)),
                   key=lambda g: order.index(g) if g in order else len(order))
    return {g: hints.get(g) if dataclasses.is_dataclass(hints.get(g)) else None for g in found}


def main_rows(cfg: DictConfig) -> list[Row]:
    """conf/config.yaml's own keys: everything but the groups' and Hydra's."""
    _, comments = yaml_comments(schema.CONF_DIR / "config.yaml")
    hints, fields = typing.get_type_hints(schema.Config), schema_comments(schema.Config)
    out = []
    for key in cfg.keys():
        if key in groups(cfg) or key == "hydra":
            continue
        node, cls = cfg._get_node(key), hints.get(key)
        if dataclasses.is_dataclass(cls):
            out += rows(node, f"{key}.", cls, comments, f"{key}.")
        else:
            out.append(leaf(key, node, cls, comments.get(key) or fields.get(key, "")))
    return out


def group_rows(group: str, cls) -> list[tuple[Path, str, list[Row]]]:
    """Per option file of a group: its header comment and, where options have keys of their own (no schema),
    its rows."""
    out = []
    for path in options(group):
        header, comments = yaml_comments(path)
        keys = []
        if cls is None:
            node = compose(f"{group}={path.stem}")
            for part in group.split("/"):
                node = node[part]
            own = [k for k in OmegaConf.load(path).keys() if k != "defaults"]  # not those it inherits
            keys = rows(node, f"{group.replace('/', '.')}.", None, comments, keys=own)
        out.append((path, header, keys))
    return out


def schema_group_rows(group: str, cls, cfg: DictConfig) -> list[Row]:
    """The keys every option of a group has (its schema's), with the default option's values and comments."""
    default = cfg.hydra.runtime.choices.get(group)
    _, comments = yaml_comments(schema.CONF_DIR / group / f"{default}.yaml")
    return rows(cfg[group], f"{group}.", cls, comments, option=f"{group}={default}")


def undocumented() -> list[str]:
    """Keys the reference would show without a comment."""
    cfg = compose()
    every, headless = main_rows(cfg), []
    for group, cls in groups(cfg).items():
        found = group_rows(group, cls)
        every += schema_group_rows(group, cls, cfg) if cls else [r for _, _, rs in found for r in rs]
        headless += [f"conf/{group}/{p.name}" for p, header, _ in found if not header]
    return [r.key for r in every if not r.comment] + headless


def prose(text: str) -> str:
    """A comment as Markdown text: <out_dir>, <split> are words, not HTML tags (its `code spans` stay as written)."""
    parts = text.split("`")
    return "`".join(p if i % 2 else re.sub(r"([<>*\[\]])", r"\\\1", p) for i, p in enumerate(parts))


def table(rs: list[Row]) -> str:
    """A definition list (MyST's deflist): the key, its type and default, then what it does at full width."""
    return "\n".join(f"`{r.key}` · {prose(r.type)} · default {r.default}\n:   {prose(r.comment)}\n" for r in rs)


def reference() -> str:
    cfg = compose()
    parts = ["<!-- generated by docs/_ext/config_reference.py from sweeper/config.py and conf/: edit those -->",
             "## The main config: `conf/config.yaml`", "", table(main_rows(cfg)), ""]
    for group, cls in groups(cfg).items():
        default = cfg.hydra.runtime.choices.get(group)
        parts += [f"## `{group}` (`conf/{group}/`)", ""]
        found = group_rows(group, cls)
        parts += ["| option | what it is |", "| --- | --- |"]
        parts += [f"| `{group}={p.stem}`{' (default)' if p.stem == default else ''} | {prose(h).replace('|', '/')} |"
                  for p, h, _ in found]
        parts.append("")
        if cls:
            parts += [f"Keys of every `{group}` option (defaults: `{group}={default}`):", "", table(
                schema_group_rows(group, cls, cfg)), ""]
        else:
            for path, _, rs in found:
                if rs:
                    parts += [f"`{group}={path.stem}`:", "", table(rs), ""]
    return "\n".join(parts)


if __name__ == "__main__":
    print(reference())
