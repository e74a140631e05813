"""Package faces that import their submodules on first use (so `sinkbench --help` and a family's zoo
registration do not import torch).

    >>> lazy_face(__name__, {"train": "workbench.toy.train", "ToyConfig": "workbench.toy.model"})

`public` maps each public name to the module that defines it. A public name may equal a submodule's name
(`toy.train` the function, in `toy/train.py`): importing the submodule would rebind the package attribute
to the module, so the face keeps the public object instead.
"""

from __future__ import annotations

import importlib
import sys
import types


def lazy_face(package: str, public: dict[str, str]) -> None:
    """Make module `package` resolve `public` names lazily (call at the end of its __init__.py)."""
    module = sys.modules[package]

    class _Face(types.ModuleType):
        def __getattr__(self, name: str):
            if name in public:
                value = getattr(importlib.import_module(public[name]), name)
                types.ModuleType.__setattr__(self, name, value)
                return value
            raise AttributeError(f"module {package!r} has no attribute {name!r}")

        def __setattr__(self, name: str, value) -> None:
            if name in public and isinstance(value, types.ModuleType):
                return  # a submodule import must not hide the public object of the same name
            super().__setattr__(name, value)

        def __dir__(self):
            return sorted(set(super().__dir__()) | set(public))

    module.__class__ = _Face
