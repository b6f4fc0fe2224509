"""One caching policy for results shared by every session: what a cache key is made of.

A cached function takes what it computes from (the model, the image, the settings) and the
cache hashes each argument with :data:`HASH_FUNCS`:

- a model (``dlgm.DLGM``) by :func:`model_key`: the id the app gave it (``pretrained:NAME``
  for a shipped model, ``trained:UUID`` / ``uploaded:UUID`` for a model of one browser tab,
  renewed whenever its weights change: :func:`name_model`), or else a digest of its weights and
  config, so a model trained or uploaded in a tab never shares a key with a pretrained one;
- a numpy array or a torch tensor by :func:`digest` of its dtype, shape and bytes (instead of
  Streamlit pickling it on every call).

Use :func:`cache_data` (a copy per call) or :func:`cache_resource` (the stored object itself,
for read-only results such as frozen figures) in place of ``st.cache_data`` /
``st.cache_resource``. Arguments with a leading underscore are not hashed, as usual.
"""

from __future__ import annotations

import functools
import hashlib
import json
import weakref

import numpy as np
import streamlit as st
import torch

import dlgm

_model_keys: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def digest(*arrays) -> str:
    """A short content hash of arrays or tensors (dtype, shape and bytes)."""
    h = hashlib.blake2b(digest_size=16)
    for a in arrays:
        if isinstance(a, torch.Tensor):
            a = a.detach().cpu().numpy()
        a = np.ascontiguousarray(a)
        h.update(f"{a.dtype.str}{a.shape};".encode())
        h.update(a.tobytes())
    return h.hexdigest()


def name_model(model: dlgm.DLGM, key: str) -> None:
    """Give ``model`` the cache key ``key`` (again after its weights change)."""
    _model_keys[model] = key


def model_key(model: dlgm.DLGM) -> str:
    """The cache key of ``model``: its name from :func:`name_model`, else a digest of its
    config and weights (a model the app did not name, e.g. a copy)."""
    key = _model_keys.get(model)
    if key is None:
        config = json.dumps(model.config.to_dict(), sort_keys=True).encode()
        key = "weights:" + digest(np.frombuffer(config, np.uint8), *model.state_dict().values())
    return key


HASH_FUNCS = {dlgm.DLGM: model_key, np.ndarray: digest, torch.Tensor: digest}
cache_data = functools.partial(st.cache_data, hash_funcs=HASH_FUNCS)
cache_resource = functools.partial(st.cache_resource, hash_funcs=HASH_FUNCS)


def read_only(tree):
    """Mark the numpy arrays of a dict (or one array) read-only; returns it."""
    for a in tree.values() if isinstance(tree, dict) else (tree,):
        if isinstance(a, np.ndarray):
            a.setflags(write=False)
    return tree
