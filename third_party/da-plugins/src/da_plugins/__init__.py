"""Extra adapters for ``da``, each registered by importing its module (``da.adapters`` entry points).

Nothing is imported here, so ``da`` loading one entry point imports that adapter's module only.
"""
