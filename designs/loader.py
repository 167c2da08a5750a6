"""Executing design source as a module, without importing torch first.

Only for child processes (the sandbox, designs.measure) and trusted seeds in tests:
this runs the code. The module is named `<design NAME>` in tracebacks, and its
lines are in linecache so tracebacks show them.
"""

from __future__ import annotations

import linecache
import sys
import types
from itertools import count

_module_ids = count()


def load_source(source: str, name: str) -> types.ModuleType:
    """Execute design source as a fresh module named `<design NAME>` in tracebacks."""
    module_name = f"genesys_design_{next(_module_ids)}"
    filename = f"<design {name}>"
    module = types.ModuleType(module_name)
    module.__file__ = filename
    sys.modules[module_name] = module  # dataclasses look their module up here
    linecache.cache[filename] = (len(source), None, source.splitlines(keepends=True), filename)
    exec(compile(source, filename, "exec"), module.__dict__)
    return module
