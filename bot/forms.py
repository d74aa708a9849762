"""Forms (modals) answered statelessly: by their custom_id and submitted values, never a stored object.

discord.py keeps open modals by custom_id alone, so two members' forms with the same id collide (the
first submit removes the other's, whose typed text is lost), and a restart forgets them all. A form
built here is kept out of that store; its cog parses the submission in `on_interaction`, reading the
state it needs from the custom_id (untrusted: always checked against the server it comes from) and
the database.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import discord


def stateless(modal: discord.ui.Modal) -> discord.ui.Modal:
    """Keep the modal out of discord.py's store: its submission is handled in `on_interaction`."""
    modal.stop()
    return modal


def modal_values(components: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """{custom_id: value (text input) or list of values (select)} from a modal submission."""
    found: dict[str, Any] = {}
    for component in components:
        if component.get("type") == 1:
            found.update(modal_values(component.get("components", [])))
        elif component.get("type") == 18:
            found.update(modal_values([component["component"]]))
        elif component.get("custom_id"):
            found[component["custom_id"]] = component.get("values", component.get("value"))
    return found


def submitted_form(interaction: discord.Interaction, prefix: str) -> tuple[str, dict[str, Any]] | None:
    """(custom_id, values) if `interaction` submits a form whose custom_id starts with `prefix`."""
    if interaction.type is not discord.InteractionType.modal_submit or not interaction.data:
        return None
    custom_id = str(interaction.data.get("custom_id", ""))
    if not custom_id.startswith(prefix):
        return None
    return custom_id, modal_values(interaction.data.get("components", []))  # type: ignore[arg-type]


def typed_text(values: Mapping[str, Any], *keys: str) -> str:
    """What the member wrote in a form's text inputs `keys` (to give back if the form is refused)."""
    return "\n\n".join(value for key in keys if isinstance(value := values.get(key), str) and value.strip())
