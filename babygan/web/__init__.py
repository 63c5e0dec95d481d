"""``babygan serve``: a local web page to try babygan (optional extra ``web``).

``service`` holds the state (one Session, one lock, the temporary folder) and knows
nothing about HTTP; ``app`` is the Starlette application around it; ``server`` binds
the socket and runs uvicorn. Importing this package imports none of them, so the CLI
can say how to install the extra when Starlette or uvicorn is missing.
"""

from __future__ import annotations

from babygan.errors import BabyganError

INSTALL_HINT = (
    "babygan serve needs the web extra: pip install 'babygan[web]' (in a checkout: pip install -e '.[web]')"
)


def require_web() -> None:
    """Raise a one-line BabyganError naming the extra when Starlette or uvicorn is missing."""
    import importlib.util

    missing = [m for m in ("starlette", "uvicorn") if importlib.util.find_spec(m) is None]
    if missing:
        raise BabyganError(f"{INSTALL_HINT} ({', '.join(missing)} not installed)")
