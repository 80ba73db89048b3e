"""Read an editor's YAML file safely: bounded nesting and alias expansion, no duplicate keys.

PyYAML's SafeLoader builds no arbitrary objects, but three things in a hostile or mistaken file
still hurt: aliases that fan out (`b: [*a, *a, ...]` a few levels deep stands for billions of
nodes; the loader shares them by reference, but any walk over the result, reading or validating it,
visits every one), nesting deep enough to exhaust Python's recursion in the composer, and a
key written twice, which YAML silently resolves to the last one (a second `feeds:` would throw
the first list away). So, before anything is built from the file:

- nesting is limited to MAX_DEPTH levels of lists and mappings, checked on the event stream
  (PyYAML's parser is not recursive, so this check itself cannot overflow);
- anchors and aliases stay allowed (sharing an `include:` list between feeds is reasonable), but
  the aliases may add at most ALIAS_BUDGET nodes to those written out in the file; the count
  is memoised per node, so checking it is linear in the file's size;
- a key repeated in the same mapping is an error naming both lines, at any depth. Keys brought
  in by a `<<:` merge are not repeats: YAML defines that keys written out override them.

Every problem is a ConfigError reading `file:line: what is wrong and what to do`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import yaml

from digest.core.errors import ConfigError

MAX_DEPTH = 64
ALIAS_BUDGET = 10_000
_MERGE_TAG = "tag:yaml.org,2002:merge"


@dataclass(frozen=True)
class YamlDocument:
    """A YAML file's data as plain Python values, with the node tree for line numbers."""

    data: Any
    root: yaml.Node | None


def load_yaml(text: str, source: str) -> YamlDocument:
    """Parse one YAML document from `text`; `source` names the file in error messages."""
    _check_events(text, source)
    loader = yaml.SafeLoader(text)
    try:
        root = loader.get_single_node()
        if root is not None:
            _check_aliases(root, source)
            _check_duplicates(root, source)
        data = loader.construct_document(root) if root is not None else None
    except yaml.YAMLError as error:
        raise ConfigError(_syntax_message(error, text, source)) from None
    except RecursionError:  # a bound above should have caught it; never a traceback
        raise ConfigError(
            f"{source}:1: the file nests too deeply to read; flatten it"
            f" (at most {MAX_DEPTH} levels)"
        ) from None
    finally:
        loader.dispose()
    return YamlDocument(data, root)


def _syntax_message(error: yaml.YAMLError, text: str, source: str) -> str:
    if isinstance(error, yaml.MarkedYAMLError):
        mark = error.problem_mark or error.context_mark
        line = mark.line + 1 if mark else 1
        problem = error.problem or error.context or "not valid YAML"
        return f"{source}:{line}: YAML syntax error: {problem}"
    if isinstance(error, yaml.reader.ReaderError):
        line = text.count("\n", 0, max(error.position, 0)) + 1
        character = error.character
        shown = f"U+{character:04X}" if isinstance(character, int) else repr(character)
        return (
            f"{source}:{line}: YAML syntax error: the control character {shown} is not allowed"
            " in a YAML file; remove it"
        )
    return f"{source}:1: YAML syntax error: {type(error).__name__}"


def _check_events(text: str, source: str) -> None:
    """Bound the nesting depth on the event stream, before the recursive composer runs."""
    depth = 0
    try:
        for event in yaml.parse(text, Loader=yaml.SafeLoader):
            if isinstance(event, yaml.CollectionStartEvent):
                depth += 1
                if depth > MAX_DEPTH:
                    line = event.start_mark.line + 1 if event.start_mark else 1
                    raise ConfigError(
                        f"{source}:{line}: lists and mappings nest more than {MAX_DEPTH}"
                        " levels deep; flatten the file"
                    )
            elif isinstance(event, yaml.CollectionEndEvent):
                depth -= 1
    except yaml.YAMLError as error:
        raise ConfigError(_syntax_message(error, text, source)) from None


def _check_aliases(root: yaml.Node, source: str) -> None:
    """Refuse a document whose aliases, expanded, would add more than ALIAS_BUDGET nodes."""
    nodes: dict[int, yaml.Node] = {}
    stack = [root]
    while stack:
        node = stack.pop()
        if id(node) not in nodes:
            nodes[id(node)] = node
            stack.extend(_children(node))
    limit = len(nodes) + ALIAS_BUDGET
    expanded: dict[int, int] = {}
    # Post-order without recursion: a node's size counts each child as often as it occurs.
    pending: list[tuple[yaml.Node, bool]] = [(root, False)]
    while pending:
        node, children_done = pending.pop()
        if id(node) in expanded:
            continue
        if not children_done:
            pending.append((node, True))
            pending.extend((child, False) for child in _children(node))
            continue
        size = 1 + sum(expanded[id(child)] for child in _children(node))
        if size > limit:
            raise ConfigError(
                f"{source}:{node.start_mark.line + 1}: aliases (*name) here expand to more"
                f" than {ALIAS_BUDGET:,} extra values; write the values out or use fewer aliases"
            )
        expanded[id(node)] = size


def _children(node: yaml.Node) -> list[yaml.Node]:
    if isinstance(node, yaml.SequenceNode):
        return list(node.value)
    if isinstance(node, yaml.MappingNode):
        return [part for pair in node.value for part in pair]
    return []


def _check_duplicates(root: yaml.Node, source: str) -> None:
    """A key written twice in one mapping is an error naming both lines."""
    seen_nodes: set[int] = set()
    stack: list[tuple[yaml.Node, str]] = [(root, "")]
    while stack:
        node, path = stack.pop()
        if id(node) in seen_nodes:
            continue
        seen_nodes.add(id(node))
        if isinstance(node, yaml.SequenceNode):
            stack.extend((item, f"{path}[{index}]") for index, item in enumerate(node.value))
        elif isinstance(node, yaml.MappingNode):
            first_lines: dict[str, int] = {}
            for key_node, value_node in node.value:
                if key_node.tag == _MERGE_TAG:
                    continue
                name = str(key_node.value) if isinstance(key_node, yaml.ScalarNode) else ""
                here = f"{path}.{name}" if path else name
                line = key_node.start_mark.line + 1
                if isinstance(key_node, yaml.ScalarNode):
                    if name in first_lines:
                        raise ConfigError(
                            f"{source}:{line}: {here}: duplicate key (first on line"
                            f" {first_lines[name]}); YAML would keep only the last one:"
                            " merge them into one"
                        )
                    first_lines[name] = line
                stack.append((value_node, here))
