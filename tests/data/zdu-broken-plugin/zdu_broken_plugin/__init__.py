"""A plugin that needs a module only its ``fancy`` extra installs (and that no index has)."""

import zdu_no_such_module_xyz  # type: ignore[import-not-found]  # noqa: F401
