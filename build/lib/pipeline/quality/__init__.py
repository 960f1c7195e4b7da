"""Quality checks after the query stage: the minimal filters, length, language, heuristics,
decontamination, the embedding checks (consistency with the positive, round trip through
the whole corpus), the LLM judge and one pair per plan.

Each check is a module of this package that registers itself (pipeline.quality.registry),
and importing the package imports every module in it, so a new check is a new module and
no list needs it added. `chain` is the exception: it assembles a job's checks and imports
the job config, which imports this package, so it is imported where it is used.
"""

import importlib
import pkgutil

NOT_CHECKS = frozenset({"chain", "registry"})

for _module in pkgutil.iter_modules(__path__):
    if _module.name not in NOT_CHECKS:
        importlib.import_module(f"{__name__}.{_module.name}")
