"""The web playground: ``eingrad serve`` (needs ``pip install 'eingrad[web]'``).

A page where a program is typed and its derivative, gradient program,
derivation, matrix form, code and finite-difference check are read, and the
JSON API behind it (docs/web.md).  ``import eingrad`` does not import this
package; importing it imports Starlette.
"""

from __future__ import annotations

from .app import create_app
from .server import serve

__all__ = ["create_app", "serve"]
