"""modelgate: route ML inference by model name and semantic-version constraint.

``modelgate.core`` is the shared kernel (errors, rendering, the ASGI body reader, SemVer
precedence, the worker announcement contract, Redis names, logging, shared settings);
``modelgate.cli`` is the command line. The product's packages sit beside it: ``registry``,
``gateway``, ``backends``, ``migrations``. See docs/ARCHITECTURE.md.
"""

__version__ = "0.1.0"
