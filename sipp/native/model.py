"""``LlamaModel``: one loaded ``llama_model`` (weights + vocabulary) and its text functions."""

from __future__ import annotations

import functools
import os
import weakref
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from sipp.errors import InvalidRequestError, ModelLoadError
from sipp.native._gguf import GgufInfo, check_model_file
from sipp.native._lib import get_native, recent_log_errors
from sipp.native._owner import Owner
from sipp.native.rpc import is_rpc_device, rpc_devices

__all__ = ["LOAD_MODES", "POOLING_TYPES", "SPLIT_MODES", "Device", "LlamaModel", "list_devices"]

SPLIT_MODES: dict[str, int] = {"none": 0, "layer": 1, "row": 2, "tensor": 3}
LOAD_MODES: dict[str, int] = {
    "auto": -1, "none": 0, "mmap": 1, "mlock": 2, "mmap_mlock": 3, "direct_io": 4,
}  # fmt: skip
POOLING_TYPES: dict[int, str] = {-1: "unspecified", 0: "none", 1: "mean", 2: "cls", 3: "last", 4: "rank"}  # fmt: skip  # noqa: E501


def utf8_text(text: str) -> bytes:
    """``text`` as UTF-8; a lone surrogate (from JSON `"\\ud800"`) is an ``InvalidRequestError``."""
    try:
        return text.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise InvalidRequestError(
            f"text holds a lone UTF-16 surrogate (\\u{ord(text[exc.start]):04x}) at index "
            f"{exc.start}, which is not text and cannot be tokenized"
        ) from None


def _free_model(lib: Any, ptr: Any) -> None:
    lib.llama_model_free(ptr)


@functools.cache
def _amx_weight_buffers_loaded(system_info: str) -> bool:
    """Whether the loaded ggml CPU backend was compiled with AMX: the pinned ggml's AMX
    weight buffer crashes in ``ggml_backend_amx_mul_mat`` (SIGSEGV), so extra buffer types
    default off then. Our own builds compile AMX out, keeping weight repacking on."""
    return "AMX_INT8 = 1" in system_info


_DEVICE_TYPES: dict[int, str] = {0: "cpu", 1: "gpu", 2: "igpu", 3: "accel", 4: "meta"}


class Device(NamedTuple):
    """One ggml device: its name, type (cpu, gpu, igpu, accel, meta) and memory in bytes."""

    name: str
    type: str
    memory_free: int = 0
    memory_total: int = 0


def list_devices() -> list[Device]:
    """Every ggml device the loaded backend sees, in ggml's order (opens the backend)."""
    native = get_native()
    ffi, lib = native.ffi, native.lib
    free, total = ffi.new("size_t *"), ffi.new("size_t *")
    out: list[Device] = []
    for i in range(lib.ggml_backend_dev_count()):
        dev = lib.ggml_backend_dev_get(i)
        name = ffi.string(lib.ggml_backend_dev_name(dev)).decode("utf-8", "replace")
        lib.ggml_backend_dev_memory(dev, free, total)
        kind = _DEVICE_TYPES.get(int(lib.ggml_backend_dev_type(dev)), "unknown")
        out.append(Device(name, kind, int(free[0]), int(total[0])))
    return out


def _device_handles(ffi: Any, lib: Any, names: Sequence[str]) -> Any:
    """A NULL-terminated ``ggml_backend_dev_t[]`` for ``names`` (offload devices only;
    ``rpc://host:port`` entries name remote workers, see :mod:`sipp.native.rpc`)."""
    by_name: dict[str, Any] = {}
    for i in range(lib.ggml_backend_dev_count()):
        dev = lib.ggml_backend_dev_get(i)
        by_name[ffi.string(lib.ggml_backend_dev_name(dev)).decode("utf-8", "replace")] = dev
    handles = []
    for name in names:
        if is_rpc_device(name):  # a remote worker: each of its devices is an offload device
            handles.extend(rpc_devices(name))
            continue
        dev = by_name.get(name)
        if dev is None:
            shown = ", ".join(by_name) or "none"
            raise ValueError(f"unknown device {name!r}; this backend has: {shown}")
        if int(lib.ggml_backend_dev_type(dev)) == 0:
            raise ValueError(
                f"device {name!r} is the CPU: it holds whatever is not offloaded and cannot "
                "be listed as an offload device"
            )
        handles.append(dev)
    return ffi.new("ggml_backend_dev_t[]", [*handles, ffi.NULL])


def _choice(name: str, value: str, table: dict[str, int]) -> int:
    if not isinstance(value, str) or value not in table:
        raise ValueError(f"{name} must be one of {', '.join(table)}, got {value!r}")
    return table[value]


class _ProgressHook:
    """Adapts ``progress(fraction)`` to libllama's ``bool (*)(float, void *)``."""

    def __init__(self, progress: Callable[[float], object]) -> None:
        self.progress = progress
        self.cancelled = False
        self.error: BaseException | None = None

    def __call__(self, fraction: float, _user_data: Any) -> bool:
        keep_going = self.progress(min(1.0, max(0.0, float(fraction)))) is not False
        self.cancelled = not keep_going
        return keep_going

    def on_error(self, _exc_type: Any, exc: BaseException | None, _tb: Any) -> bool:
        self.error = exc
        self.cancelled = True
        return False


class LlamaModel(Owner):
    """A GGUF model loaded by libllama.

    ``devices`` lists the offload devices by ggml name (``[]`` = none: everything stays on
    the CPU; None = every GPU libllama finds); an unknown or CPU name raises ``ValueError``.
    ``tensor_split`` gives each offload device's share of the layers (or rows), at most
    ``llama_max_devices()`` entries. ``no_host`` skips the GPU's pinned host buffer for
    CPU-resident weights (so extra buffer types can be used).
    ``use_extra_bufts`` (weight repacking buffers) defaults to on, except on AMX CPUs where
    the pinned ggml's AMX path crashes. The path is checked in Python first (exists, is a
    file, GGUF magic, header and tensor data complete, architecture known); every failure
    is a ``ModelLoadError`` naming the path and the reason. ``progress(fraction)`` is
    called from libllama during the load (on the loading thread, 0.0 to 1.0); returning
    ``False`` (or raising) cancels the load with a ``ModelLoadError``. Closing the model
    closes its live contexts and samplers first.
    """

    _kind = "LlamaModel"

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        n_gpu_layers: int | None = None,
        main_gpu: int | None = None,
        split_mode: str | None = None,
        devices: Sequence[str] | None = None,
        tensor_split: Sequence[float] | None = None,
        no_host: bool = False,
        load_mode: str | None = None,
        vocab_only: bool = False,
        check_tensors: bool = False,
        use_extra_bufts: bool | None = None,
        progress: Callable[[float], object] | None = None,
    ) -> None:
        if not isinstance(path, (str, os.PathLike)):
            raise TypeError(f"path must be a str or os.PathLike, got {type(path).__name__}")
        self.path = Path(path)
        if n_gpu_layers is not None and (
            not isinstance(n_gpu_layers, int) or isinstance(n_gpu_layers, bool)
        ):
            raise ValueError(f"n_gpu_layers must be an int (-1 = all), got {n_gpu_layers!r}")
        if main_gpu is not None and (not isinstance(main_gpu, int) or main_gpu < 0):
            raise ValueError(f"main_gpu must be an int >= 0, got {main_gpu!r}")
        self.gguf: GgufInfo = check_model_file(self.path)
        native = get_native()
        ffi, lib = native.ffi, native.lib
        params = lib.llama_model_default_params()
        if n_gpu_layers is not None:
            params.n_gpu_layers = n_gpu_layers
        if main_gpu is not None:
            params.main_gpu = main_gpu
        if split_mode is not None:
            params.split_mode = _choice("split_mode", split_mode, SPLIT_MODES)
        if load_mode is not None:
            params.load_mode = _choice("load_mode", load_mode, LOAD_MODES)
        # buffers libllama reads during the load; kept alive on the owner
        self._param_buffers: list[Any] = []
        if devices is not None:
            dev_array = _device_handles(ffi, lib, devices)
            self._param_buffers.append(dev_array)
            params.devices = dev_array
        if tensor_split:
            limit = int(lib.llama_max_devices())
            shares = [float(x) for x in tensor_split]
            if len(shares) > limit or any(not x >= 0.0 for x in shares):
                raise ValueError(
                    f"tensor_split must hold at most {limit} non-negative numbers, got {shares}"
                )
            split = ffi.new("float[]", shares + [0.0] * (limit - len(shares)))
            self._param_buffers.append(split)
            params.tensor_split = split
        params.no_host = bool(no_host)
        params.vocab_only = bool(vocab_only)
        params.check_tensors = bool(check_tensors)
        if use_extra_bufts is None:
            info = ffi.string(lib.llama_print_system_info()).decode(errors="replace")
            use_extra_bufts = not _amx_weight_buffers_loaded(info)
        params.use_extra_bufts = bool(use_extra_bufts)
        if progress is not None and not callable(progress):
            raise TypeError("progress must be a callable taking a fraction in [0, 1]")
        hook = _ProgressHook(progress) if progress is not None else None
        if hook is not None:
            # the cffi callback must outlive the load: it is a local until the call returns
            callback = ffi.callback("llama_progress_callback", hook, onerror=hook.on_error)
            params.progress_callback = callback
        recent_log_errors(clear=True)
        ptr = lib.llama_model_load_from_file(os.fsencode(self.path), params)
        if hook is not None:
            del callback
        if ptr == ffi.NULL:
            if hook is not None and hook.cancelled:
                reason = (f"the progress callback raised {hook.error!r}" if hook.error
                          else "cancelled by the progress callback (it returned False)")
                raise ModelLoadError(f"Cannot load model {self.path}: {reason}")
            detail = "; ".join(recent_log_errors(clear=True)[-3:]) or "llama.cpp returned NULL"
            raise ModelLoadError(f"Cannot load model {self.path}: {detail}")
        self._own(ptr, _free_model, lib, ptr)
        self._ffi = ffi
        self._lib = lib
        self.vocab_only = bool(vocab_only)
        self._vocab = lib.llama_model_get_vocab(ptr)
        self.n_vocab: int = lib.llama_vocab_n_tokens(self._vocab)
        self._dependents: weakref.WeakSet[Owner] = weakref.WeakSet()
        self._pieces: dict[int, bytes] = {}
        self._special_pieces: dict[int, bytes] = {}
        self._eog: frozenset[int] | None = None

    # ------------------------------------------------------------------ lifetime
    def _attach(self, dependent: Owner) -> None:
        """Register a context/sampler that must be closed before this model."""
        self._handle()
        self._dependents.add(dependent)

    def _before_close(self) -> None:
        for dep in list(self._dependents):
            dep.close()

    @property
    def vocab_ptr(self) -> Any:
        """The ``const llama_vocab *`` (for samplers); raises once closed."""
        self._handle()
        return self._vocab

    # ------------------------------------------------------------------ text
    def tokenize(
        self, text: str | bytes, add_special: bool = True, parse_special: bool = False
    ) -> list[int]:
        """Token ids of ``text``; ``add_special`` adds BOS/EOS as the model is configured,
        ``parse_special`` turns special-token text (``<start_of_turn>``) into those tokens."""
        ptr = self._handle()
        raw = utf8_text(text) if isinstance(text, str) else bytes(text)
        lib, ffi = self._lib, self._ffi
        cap = len(raw) + 8
        buf = ffi.new("llama_token[]", cap)
        n = lib.llama_tokenize(self._vocab, raw, len(raw), buf, cap, add_special, parse_special)
        if n < 0:
            if n == -(2**31):
                raise ValueError("tokenize: the result does not fit in int32")
            cap = -n
            buf = ffi.new("llama_token[]", cap)
            n = lib.llama_tokenize(self._vocab, raw, len(raw), buf, cap, add_special, parse_special)
            if n < 0:
                raise ValueError(f"tokenize failed (return code {n})")
        del ptr
        return list(ffi.unpack(buf, n))

    def token_to_piece(self, token: int, special: bool = False) -> bytes:
        """The bytes of one token (may be part of a UTF-8 character); cached per token."""
        cache = self._special_pieces if special else self._pieces
        piece = cache.get(token)
        if piece is not None:
            if self._ptr is None:
                raise self._closed()
            return piece
        self._handle()
        if not 0 <= token < self.n_vocab:
            raise ValueError(f"token must be in [0, {self.n_vocab}), got {token}")
        ffi, lib = self._ffi, self._lib
        buf = ffi.new("char[]", 64)
        n = lib.llama_token_to_piece(self._vocab, token, buf, 64, 0, special)
        if n < 0:
            buf = ffi.new("char[]", -n)
            n = lib.llama_token_to_piece(self._vocab, token, buf, -n, 0, special)
        piece = ffi.unpack(buf, n) if n > 0 else b""
        cache[token] = piece
        return piece

    def detokenize(
        self,
        tokens: Sequence[int] | np.ndarray,
        remove_special: bool = False,
        unparse_special: bool = False,
    ) -> str:
        """The text of ``tokens`` (invalid UTF-8 is replaced)."""
        return self.detokenize_bytes(tokens, remove_special, unparse_special).decode(
            "utf-8", "replace"
        )

    def detokenize_bytes(
        self,
        tokens: Sequence[int] | np.ndarray,
        remove_special: bool = False,
        unparse_special: bool = False,
    ) -> bytes:
        """The bytes of ``tokens``."""
        self._handle()
        arr = np.ascontiguousarray(tokens, dtype=np.int32)
        if arr.ndim != 1:
            raise ValueError(f"tokens must be 1-D, got shape {arr.shape}")
        if arr.size and (int(arr.min()) < 0 or int(arr.max()) >= self.n_vocab):
            raise ValueError(f"tokens must be in [0, {self.n_vocab})")
        ffi, lib = self._ffi, self._lib
        src = ffi.cast("llama_token *", ffi.from_buffer(arr)) if arr.size else ffi.NULL
        cap = max(16, arr.size * 8)
        buf = ffi.new("char[]", cap)
        n = lib.llama_detokenize(
            self._vocab, src, arr.size, buf, cap, remove_special, unparse_special
        )
        if n < 0:
            cap = -n
            buf = ffi.new("char[]", cap)
            n = lib.llama_detokenize(
                self._vocab, src, arr.size, buf, cap, remove_special, unparse_special
            )
            if n < 0:
                raise ValueError(f"detokenize failed (return code {n})")
        return ffi.unpack(buf, n)

    # ------------------------------------------------------------------ vocab
    def _tok(self, fn: str) -> int | None:
        self._handle()
        value = int(getattr(self._lib, fn)(self._vocab))
        return None if value < 0 else value

    @property
    def bos(self) -> int | None:
        """Beginning-of-sequence token, or None."""
        return self._tok("llama_vocab_bos")

    @property
    def eos(self) -> int | None:
        """End-of-sequence token, or None."""
        return self._tok("llama_vocab_eos")

    @property
    def eot(self) -> int | None:
        """End-of-turn token, or None."""
        return self._tok("llama_vocab_eot")

    @property
    def add_bos(self) -> bool:
        """Whether tokenize(add_special=True) adds BOS."""
        self._handle()
        return bool(self._lib.llama_vocab_get_add_bos(self._vocab))

    def is_eog(self, token: int) -> bool:
        """Whether ``token`` ends generation (EOS, EOT, model-specific end tokens)."""
        self._handle()
        return bool(self._lib.llama_vocab_is_eog(self._vocab, token))

    def eog_tokens(self) -> frozenset[int]:
        """All end-of-generation token ids (scans the vocabulary on the first call)."""
        self._handle()
        if self._eog is None:
            is_eog, vocab = self._lib.llama_vocab_is_eog, self._vocab
            self._eog = frozenset(t for t in range(self.n_vocab) if is_eog(vocab, t))
        return self._eog

    def is_control(self, token: int) -> bool:
        """Whether ``token`` is a control token (not rendered as text)."""
        self._handle()
        return bool(self._lib.llama_vocab_is_control(self._vocab, token))

    @property
    def decoder_start_token(self) -> int | None:
        """First decoder token of encoder-decoder models (T5), else None."""
        value = int(self._lib.llama_model_decoder_start_token(self._handle()))
        return None if value < 0 else value

    # ------------------------------------------------------------------ metadata
    def _string(self, fn: Any, *args: Any) -> str | None:
        ffi = self._ffi
        size = 256
        while True:
            buf = ffi.new("char[]", size)
            n = fn(*args, buf, size)
            if n < 0:
                return None
            if n < size:
                return ffi.string(buf, n).decode("utf-8", "replace")
            size = n + 1

    def meta(self, key: str) -> str | None:
        """One metadata value (as text), or None if absent or an array."""
        ptr = self._handle()
        return self._string(self._lib.llama_model_meta_val_str, ptr, key.encode())

    @property
    def metadata(self) -> dict[str, str]:
        """All scalar metadata as text (arrays are omitted by libllama)."""
        ptr = self._handle()
        lib = self._lib
        out: dict[str, str] = {}
        for i in range(lib.llama_model_meta_count(ptr)):
            key = self._string(lib.llama_model_meta_key_by_index, ptr, i)
            value = self._string(lib.llama_model_meta_val_str_by_index, ptr, i)
            if key is not None and value is not None:
                out[key] = value
        return out

    def chat_template(self, name: str | None = None) -> str | None:
        """The GGUF's chat template (default or named), or None."""
        ptr = self._handle()
        ffi = self._ffi
        raw = self._lib.llama_model_chat_template(ptr, name.encode() if name else ffi.NULL)
        return None if raw == ffi.NULL else ffi.string(raw).decode("utf-8", "replace")

    @property
    def architecture(self) -> str:
        """``general.architecture`` (e.g. ``gemma3``)."""
        return self.gguf.architecture or ""

    @property
    def description(self) -> str:
        """libllama's short description (e.g. ``gemma3 270M Q4_K - Medium``)."""
        ptr = self._handle()
        return self._string(self._lib.llama_model_desc, ptr) or ""

    def _int(self, fn: str) -> int:
        return int(getattr(self._lib, fn)(self._handle()))

    @property
    def n_ctx_train(self) -> int:
        """Context length the model was trained with."""
        return self._int("llama_model_n_ctx_train")

    @property
    def n_embd(self) -> int:
        """Hidden size."""
        return self._int("llama_model_n_embd")

    @property
    def n_embd_out(self) -> int:
        """Size of output embeddings (equals ``n_embd`` unless the model projects them)."""
        value = self._int("llama_model_n_embd_out")
        return value if value > 0 else self.n_embd

    @property
    def n_layer(self) -> int:
        """Number of layers."""
        return self._int("llama_model_n_layer")

    @property
    def n_head(self) -> int:
        """Number of attention heads."""
        return self._int("llama_model_n_head")

    @property
    def n_swa(self) -> int:
        """Sliding-window attention size (0 = none)."""
        return self._int("llama_model_n_swa")

    @property
    def n_cls_out(self) -> int:
        """Classifier outputs (rerankers)."""
        return self._int("llama_model_n_cls_out")

    @property
    def size(self) -> int:
        """Bytes of all tensors."""
        return self._int("llama_model_size")

    @property
    def n_params(self) -> int:
        """Number of parameters."""
        return self._int("llama_model_n_params")

    @property
    def has_encoder(self) -> bool:
        """Whether the model needs ``encode()`` first (T5, BERT)."""
        return bool(self._int("llama_model_has_encoder"))

    @property
    def has_decoder(self) -> bool:
        """Whether the model has a decoder (False for encoder-only models)."""
        return bool(self._int("llama_model_has_decoder"))

    @property
    def is_recurrent(self) -> bool:
        """Mamba/RWKV-style recurrent model."""
        return bool(self._int("llama_model_is_recurrent"))

    @property
    def is_hybrid(self) -> bool:
        """Hybrid attention/recurrent model."""
        return bool(self._int("llama_model_is_hybrid"))

    @property
    def pooling_type(self) -> str:
        """The model's pooling for embeddings, from its metadata (``none`` if unset)."""
        self._handle()
        for key, value in self.gguf.metadata.items():
            if key.endswith(".pooling_type") and isinstance(value, int):
                return POOLING_TYPES.get(value, "unspecified")
        return "none"

    def __repr__(self) -> str:
        state = "closed" if self._ptr is None else self.architecture
        return f"<LlamaModel {str(self.path)!r} {state}>"
