"""Every test compiles in debug mode: before each in-place write, the generated code checks
that no live value shares the buffer written (``eg.compile(..., debug=True)``; docs/compiler.md)."""

import os

os.environ.setdefault("EINGRAD_COMPILE_DEBUG", "1")
