"""An opt-in disk cache of scans, synergy matrices and gradient baselines.

    import coax_nb
    coax_nb.use_cache()                  # ~/.cache/coax-nb, or $COAX_CACHE; use_cache("folder") to choose
    scores = coax_scan(engine, primaries=S)   # computed and saved
    scores = coax_scan(engine, primaries=S)   # loaded, with a CacheNotice saying from where

or ``COAX_CACHE=/some/folder`` in the environment (a notebook's kernel, papermill, CI).
A result is found again only for the same weights (as held in memory: an in-place edit
is a different model), the same prompts, answers and output positions, the same dtype,
the same options and the same coax-nb version; anything else is computed anew. Files are
the results' own versioned JSON, written atomically (an interrupted write leaves no
half file), one per result, under ``<cache>/<kind>/<key>.json``: delete the folder to
forget everything.
"""
from __future__ import annotations

import hashlib
import json
import os
import warnings
from pathlib import Path
from typing import Callable, Optional, Union

_folder: Optional[Path] = None
_off = False


class CacheNotice(UserWarning):
    """A result was loaded from the disk cache instead of computed (filter it to hide it)."""


def use_cache(folder: Union[bool, str, os.PathLike, None] = True) -> Optional[Path]:
    """Turn the cache on (``True``: ``$COAX_CACHE`` or ``~/.cache/coax-nb``; a path: that
    folder) or off (``False``/``None``, also over ``$COAX_CACHE``). Returns the folder in use."""
    global _folder, _off
    if folder is None or folder is False:
        _folder, _off = None, True
        return None
    if folder is True:
        folder = os.environ.get("COAX_CACHE") or Path.home() / ".cache" / "coax-nb"
    path = Path(folder).expanduser()
    if path.exists() and not path.is_dir():
        raise ValueError(f"the cache folder {path} is a file; give a folder (it is created if missing)")
    _folder, _off = path, False
    return path


def cache_folder() -> Optional[Path]:
    """The folder in use, or None when the cache is off (the default)."""
    if _off:
        return None
    if _folder is not None:
        return _folder
    env = os.environ.get("COAX_CACHE")
    return Path(env).expanduser() if env else None


def cached(kind: str, engine, options: dict, compute: Callable):
    """``compute()``'s result, or the one saved for the same ``kind``, engine inputs and
    ``options``. Without a cache folder, or for an engine whose inputs cannot be hashed
    (a custom metric function), it just computes."""
    folder = cache_folder()
    if folder is None:
        return compute()
    fingerprint = engine.fingerprint()
    if fingerprint is None:
        return compute()
    from .io import atomic_write_text
    from .results import SCHEMA_VERSION, load
    from .version import __version__

    key_data = {"kind": kind, "inputs": fingerprint, "options": options, "coax_nb": __version__,
                "schema": SCHEMA_VERSION}
    key = hashlib.sha256(json.dumps(key_data, sort_keys=True, default=str).encode()).hexdigest()[:24]
    path = folder / kind / f"{key}.json"
    if path.is_file():
        try:
            result = load(path)
        except (ValueError, OSError) as exc:  # a damaged or foreign file: say so, recompute, replace it
            warnings.warn(f"{kind}: the cache entry {path} could not be read ({exc}); computing anew",
                          CacheNotice, stacklevel=3)
        else:
            warnings.warn(f"{kind}: loaded from the cache ({path}), nothing recomputed; "
                          "coax_nb.use_cache(False) computes anew", CacheNotice, stacklevel=3)
            result.meta["cache"] = {"loaded_from": str(path)}
            return result
    result = compute()
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, result.to_json())
    return result


__all__ = ["CacheNotice", "cache_folder", "cached", "use_cache"]
