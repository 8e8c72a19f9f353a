"""Renamed keywords keep working for a while, with a warning that names the new one."""
from __future__ import annotations

import functools
import warnings


def renamed(**old_to_new: str):
    """Accept ``old=`` as a deprecated alias of ``new=`` (e.g. ``seed=`` for ``primaries=``)."""
    def wrap(fn):
        @functools.wraps(fn)
        def inner(*args, **kwargs):
            for old, new in old_to_new.items():
                if old in kwargs:
                    if new in kwargs:
                        raise TypeError(f"{fn.__name__}() got both {old}= and {new}=; {old}= is the old name of {new}=")
                    warnings.warn(f"{fn.__name__}({old}=...) is renamed {new}=...", DeprecationWarning, stacklevel=2)
                    kwargs[new] = kwargs.pop(old)
            return fn(*args, **kwargs)
        return inner
    return wrap
