"""Library instrumentations: one module of targets and extractors per library, all wrapped by ``_base``."""
