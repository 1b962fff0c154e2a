"""Model sources and the model cache: load models by path, name, hub file or URL.

A *model source* is any of:

* a local path (``model.gguf``; a split model by its first ``-00001-of-0000N.gguf`` shard);
* a packaged model name (``gemma``: a model shipped as a PyPI package);
* ``hf://org/repo/file.gguf``, ``hf://org/repo@revision/file.gguf``, a glob
  (``hf://org/repo/*Q4_K_M.gguf``, exactly one match or an error listing the matches),
  ``hf://org/repo:Q4_K_M`` (same as ``*Q4_K_M*.gguf``) or ``hf://org/repo`` (its only
  model file);
* an ``https://`` (or ``http://``) URL of a ``.gguf``, optionally pinned with
  ``#sha256=<hex>``.

Hub files go through huggingface_hub into the shared Hugging Face cache; URLs into the
same directory (see :mod:`sipp.models.cache`). ``LocalModelDescriptor``, the CLI and the
gateway's TOML all accept sources; this package is the library behind them.
"""

from sipp.models.cache import CachedFile, hub_cache_dir, list_cached, remove_cached
from sipp.models.gguf_info import ModelFacts, read_model_facts
from sipp.models.progress import ProgressCallback
from sipp.models.resolve import ResolvedModel, ResolveOptions, resolve_model, resolve_projector
from sipp.models.source import ModelSource, is_remote_source, parse_source

__all__ = [
    "CachedFile",
    "ModelFacts",
    "ModelSource",
    "ProgressCallback",
    "ResolveOptions",
    "ResolvedModel",
    "hub_cache_dir",
    "is_remote_source",
    "list_cached",
    "parse_source",
    "read_model_facts",
    "remove_cached",
    "resolve_model",
    "resolve_projector",
]
