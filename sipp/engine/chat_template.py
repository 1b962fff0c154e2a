"""Render chat messages with a GGUF's ``tokenizer.chat_template`` (Jinja2).

Templates run in Jinja's immutable sandbox with the conventions Hugging Face chat templates
expect: variables ``messages``, ``add_generation_prompt``, ``bos_token``, ``eos_token``,
``tools`` and ``documents`` (``None`` unless given) plus any extra keyword; the global
functions ``raise_exception(message)`` and ``strftime_now(format)``; a ``tojson`` filter
that keeps non-ASCII text (``ensure_ascii=False``) and takes ``indent``; ``trim_blocks``,
``lstrip_blocks``, the loop-controls extension (``break``/``continue``) and the
``{% generation %}`` block (rendered as its body).

Templates are compiled once per source text and cached. Every failure (syntax error,
``raise_exception``, undefined variable, error inside the template) raises
:class:`~sipp.errors.ChatTemplateError` (a ``ValueError``, code ``chat_template``).

A template comes with a model file, so it is not trusted: besides the sandbox (no attribute
escapes, ``range`` capped at 100,000), a render may run at most :data:`MAX_RENDER_SECONDS`
(checked while its code runs, so nested loops that print nothing stop too), produce at most
:data:`MAX_OUTPUT_CHARS` characters, repeat a string or list to at most that size, raise to
powers of at most 1,000 and recurse as deep as Python allows -- each a ChatTemplateError.
"""

from __future__ import annotations

import functools
import json
import operator
import sys
import time
from collections.abc import Mapping, Sequence
from datetime import datetime
from types import TracebackType
from typing import Any, NoReturn

import jinja2
import jinja2.ext
import jinja2.nodes
from jinja2 import meta
from jinja2.sandbox import ImmutableSandboxedEnvironment

from sipp.engine.tools.render import template_inputs
from sipp.errors import ChatTemplateError
from sipp.types import ChatMessage

__all__ = [
    "MAX_OUTPUT_CHARS",
    "MAX_RENDER_SECONDS",
    "ChatTemplate",
    "ChatTemplateError",
    "starts_with_bos",
]

MAX_RENDER_SECONDS = 2.0
"""Longest one render may run."""
MAX_OUTPUT_CHARS = 8 << 20
"""Most characters one render may produce (and the largest string/list ``*`` may build)."""
_MAX_EXPONENT = 1000
_CHECK_EVERY = 256  # template lines between clock reads


class _Budget(Exception):
    """A render went over one of its limits (message says which)."""


class _TemplateRaised(Exception):
    """Raised by the template's own ``raise_exception`` call."""


def _raise_exception(message: object) -> NoReturn:
    raise _TemplateRaised(str(message))


def _strftime_now(fmt: str) -> str:
    return datetime.now().strftime(fmt)


def _tojson(
    value: Any,
    ensure_ascii: bool = False,
    indent: int | str | None = None,
    separators: tuple[str, str] | None = None,
    sort_keys: bool = False,
) -> str:
    return json.dumps(
        value, ensure_ascii=ensure_ascii, indent=indent, separators=separators, sort_keys=sort_keys
    )


class _GenerationBlock(jinja2.ext.Extension):
    """``{% generation %}...{% endgeneration %}`` (marks assistant text for training masks in
    Hugging Face); rendering keeps the body unchanged."""

    tags = {"generation"}  # noqa: RUF012  (Jinja declares it a set)

    def parse(self, parser: Any) -> Any:
        lineno = next(parser.stream).lineno
        body = parser.parse_statements(("name:endgeneration",), drop_needle=True)
        return jinja2.nodes.Scope(body, lineno=lineno)


class _BoundedEnvironment(ImmutableSandboxedEnvironment):
    """The immutable sandbox, with ``*`` and ``**`` checked before they allocate."""

    intercepted_binops = frozenset({"*", "**"})

    def call_binop(self, context: Any, operator_: str, left: Any, right: Any) -> Any:
        if operator_ == "*":
            for seq, times in ((left, right), (right, left)):
                if isinstance(seq, (str, list, tuple)) and isinstance(times, int):
                    if len(seq) * max(times, 0) > MAX_OUTPUT_CHARS:
                        raise _Budget(
                            f"a repetition of {len(seq)} items x {times} is over the "
                            f"{MAX_OUTPUT_CHARS} limit"
                        )
            return operator.mul(left, right)
        if operator_ == "**":
            if isinstance(right, (int, float)) and abs(right) > _MAX_EXPONENT:
                raise _Budget(f"an exponent of {right} is over the {_MAX_EXPONENT} limit")
            return operator.pow(left, right)
        return super().call_binop(context, operator_, left, right)


@functools.lru_cache(maxsize=1)
def _environment() -> ImmutableSandboxedEnvironment:
    env = _BoundedEnvironment(
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=False,
        extensions=[jinja2.ext.loopcontrols, _GenerationBlock],
    )
    env.filters["tojson"] = _tojson
    env.globals["raise_exception"] = _raise_exception
    env.globals["strftime_now"] = _strftime_now
    return env


@functools.lru_cache(maxsize=64)
def _compile(source: str) -> jinja2.Template:
    try:
        return _environment().from_string(source, globals=None)
    except jinja2.TemplateSyntaxError as exc:
        raise ChatTemplateError(
            f"chat template syntax error at line {exc.lineno}: {exc.message}"
        ) from exc


def _bounded_render(template: jinja2.Template, variables: dict[str, Any]) -> str:
    """``template.render(variables)`` within the time and output limits."""
    deadline = time.monotonic() + MAX_RENDER_SECONDS
    lines = [0]

    def local(frame: Any, event: str, arg: Any) -> Any:
        if event == "line":
            lines[0] += 1
            if lines[0] % _CHECK_EVERY == 0 and time.monotonic() > deadline:
                raise _Budget(f"rendering ran longer than {MAX_RENDER_SECONDS:g} s")
        return local

    def trace(frame: Any, event: str, arg: Any) -> Any:
        # only the template's own compiled code is traced (Python code it calls is not)
        return local if frame.f_code.co_filename == "<template>" else None

    previous = sys.gettrace()
    sys.settrace(trace)
    try:
        pieces: list[str] = []
        size = 0
        for piece in template.generate(variables):
            size += len(piece)
            if size > MAX_OUTPUT_CHARS:
                raise _Budget(f"the output is over {MAX_OUTPUT_CHARS} characters")
            pieces.append(piece)
        return "".join(pieces)
    finally:
        sys.settrace(previous)


def _template_line(tb: TracebackType | None) -> int | None:
    """The template line where rendering failed (Jinja rewrites tracebacks to point there)."""
    line = None
    while tb is not None:
        if tb.tb_frame.f_code.co_filename == "<template>":
            line = tb.tb_lineno
        tb = tb.tb_next
    return line


def _message_dict(index: int, message: Any) -> Mapping[str, Any]:
    if isinstance(message, ChatMessage):
        return message.to_dict()
    if not isinstance(message, Mapping):
        raise ChatTemplateError(
            f"messages[{index}] must be a mapping with 'role' and 'content', "
            f"got {type(message).__name__}"
        )
    role = message.get("role")
    if not isinstance(role, str) or not role:
        raise ChatTemplateError(f"messages[{index}].role must be a non-empty string, got {role!r}")
    if "content" not in message and not message.get("tool_calls"):
        raise ChatTemplateError(f"messages[{index}] has no 'content'")
    return message


def starts_with_bos(prompt: str, bos_token: str) -> bool:
    """Whether ``prompt`` already begins with the BOS text (then do not add another BOS)."""
    return bool(bos_token) and prompt.startswith(bos_token)


class ChatTemplate:
    """A compiled chat template; compile once, render many times (thread-safe).

    ``ChatTemplate(source, bos_token, eos_token).render(messages)`` returns the prompt text.
    """

    __slots__ = ("_template", "bos_token", "eos_token", "source")

    def __init__(self, source: str, bos_token: str = "", eos_token: str = "") -> None:
        if not isinstance(source, str) or not source.strip():
            raise ChatTemplateError("chat template source must be a non-empty string")
        for name, token in (("bos_token", bos_token), ("eos_token", eos_token)):
            if not isinstance(token, str):
                raise ChatTemplateError(f"{name} must be a string, got {type(token).__name__}")
        self.source = source
        self.bos_token = bos_token
        self.eos_token = eos_token
        self._template = _compile(source)

    def render(
        self,
        messages: Sequence[Mapping[str, Any] | ChatMessage],
        add_generation_prompt: bool = True,
        *,
        tools: Sequence[Mapping[str, Any]] | None = None,
        **extra: Any,
    ) -> str:
        """Render ``messages`` (``{"role", "content"}`` mappings or :class:`ChatMessage`,
        with assistant ``tool_calls`` and ``tool`` turns).

        ``tools`` (OpenAI function tools) become the template's ``tools`` variable, as
        Hugging Face templates expect; a template that ignores tools gets them, the calls
        and the results as text instead (:mod:`sipp.engine.tools.render`). ``extra`` adds
        template variables (``date_string``, ...) and may override ``bos_token`` /
        ``eos_token``. Raises :class:`ChatTemplateError` on any failure.
        """
        if isinstance(messages, (str, bytes)) or not isinstance(messages, Sequence):
            raise ChatTemplateError(
                f"messages must be a list of messages, got {type(messages).__name__}"
            )
        variables: dict[str, Any] = {
            "bos_token": self.bos_token,
            "eos_token": self.eos_token,
            "tools": None,
            "documents": None,
        }
        variables.update(extra)
        dicts: list[Mapping[str, Any]] = [_message_dict(i, m) for i, m in enumerate(messages)]
        if tools is not None:
            variables["tools"] = [dict(t) for t in tools]
        if tools or any(m.get("tool_calls") or m.get("role") == "tool" for m in dicts):
            adapted, variables["tools"] = template_inputs(self.source, dicts, tools)
            dicts = list(adapted)
        variables["messages"] = dicts
        variables["add_generation_prompt"] = bool(add_generation_prompt)
        try:
            return _bounded_render(self._template, variables)
        except _Budget as exc:
            raise ChatTemplateError(f"chat template stopped: {exc}") from None
        except RecursionError:
            raise ChatTemplateError("chat template stopped: it recursed too deeply") from None
        except _TemplateRaised as exc:
            raise ChatTemplateError(f"chat template raised an error: {exc}") from exc
        except jinja2.UndefinedError as exc:
            raise ChatTemplateError(
                f"chat template uses an undefined value{self._at(exc)}: {exc.message}"
            ) from exc
        except jinja2.TemplateError as exc:
            raise ChatTemplateError(f"chat template failed{self._at(exc)}: {exc}") from exc
        except (TypeError, ValueError, LookupError, AttributeError, ArithmeticError) as exc:
            raise ChatTemplateError(
                f"chat template failed{self._at(exc)}: {type(exc).__name__}: {exc}"
            ) from exc

    @property
    def takes_documents(self) -> bool:
        """Whether the template reads a ``documents`` variable (RAG-aware templates)."""
        return "documents" in meta.find_undeclared_variables(_environment().parse(self.source))

    def starts_with_bos(self, prompt: str) -> bool:
        """Whether ``prompt`` (rendered by this template) already begins with the BOS text."""
        return starts_with_bos(prompt, self.bos_token)

    @staticmethod
    def _at(exc: BaseException) -> str:
        line = _template_line(exc.__traceback__)
        return "" if line is None else f" at line {line}"

    def __repr__(self) -> str:
        return f"ChatTemplate(<{len(self.source)} chars>, bos_token={self.bos_token!r})"
