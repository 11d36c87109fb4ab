"""Print the configuration table of README.md from app.config.Settings (keeps docs honest).

.venv/bin/python scripts/settings_table.py
"""

from __future__ import annotations

from pydantic import BaseModel

from app.config import Settings


def rows(model: type[BaseModel], prefix: str) -> list[tuple[str, str, str]]:
    out = []
    for name, field in model.model_fields.items():
        annotation = field.annotation
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            out += rows(annotation, f"{prefix}{name.upper()}__")
            continue
        if field.default_factory is not None:
            shown = "(computed)"
        else:
            shown = "" if field.default is None else str(field.default)
        out.append((f"{prefix}{name.upper()}", shown, field.description or ""))
    return out


def main() -> None:
    print("| variable | default | meaning |")
    print("| --- | --- | --- |")
    for var, default, description in rows(Settings, "DISTILLERY_"):
        print(f"| `{var}` | `{default}` | {description.replace('|', '/')} |")


if __name__ == "__main__":
    main()
