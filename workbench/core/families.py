"""Model families that live above the zoo (toy transformers, ViTs) plug themselves in here.

    [project.entry-points."sink_workbench.families"]      # pyproject.toml
    vision = "workbench.vision.zoo_entries:register"

The zoo and `core.modelinfo` keep tables (names, prefixes, config matchers -> loaders and describers);
a family fills them from its `register()` function, found through this entry-point group, so no module
below a family ever imports it. `ensure_registered()` runs each registration once per process, on the
first lookup that needs it (not at import: `sinkbench --help` stays fast). Third-party packages can add
families the same way.
"""

from __future__ import annotations

from importlib.metadata import entry_points

GROUP = "sink_workbench.families"
_done = False


def ensure_registered() -> None:
    """Import every registered family once (idempotent; cheap after the first call)."""
    global _done
    if _done:
        return
    _done = True
    for entry in sorted(entry_points(group=GROUP), key=lambda e: e.name):
        entry.load()()
