"""Render effective settings for ``strongroom config show`` with secrets masked.

The TOML form can be pasted into a config file as a starting point; values that
TOML cannot express (unset options) become comments.
"""

from __future__ import annotations

import json
from typing import Any

from strongroom.config import Settings

MASK = "**********"


def masked_settings(settings: Settings) -> dict[str, Any]:
    """The settings tree as JSON-able data; pydantic masks every SecretStr."""
    data: dict[str, Any] = settings.model_dump(mode="json")
    return data


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(item) for item in value) + "]"
    if isinstance(value, dict):
        # Tables inside arrays (e.g. rate-limit policies) as inline tables.
        items = (f"{k} = {_toml_value(v)}" for k, v in value.items() if v is not None)
        return "{ " + ", ".join(items) + " }"
    # JSON string escapes are valid TOML basic-string escapes.
    return json.dumps(str(value))


def to_toml(data: dict[str, Any]) -> str:
    """Top-level scalars first, then one ``[table]`` per nested mapping, depth first."""
    sections: list[str] = []

    def emit(table: dict[str, Any], name: str) -> None:
        lines = [f"[{name}]"] if name else []
        nested: list[tuple[str, dict[str, Any]]] = []
        for key, value in table.items():
            if isinstance(value, dict):
                nested.append((f"{name}.{key}" if name else key, value))
            elif value is None:
                lines.append(f"# {key} = (unset)")
            else:
                lines.append(f"{key} = {_toml_value(value)}")
        if lines:
            sections.append("\n".join(lines))
        for child_name, child in nested:
            emit(child, child_name)

    emit(data, "")
    return "\n\n".join(sections) + "\n"
