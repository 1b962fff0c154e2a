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
"""

from __future__ import annotations

import functools
import json
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

__all__ = ["ChatTemplate", "ChatTemplateError", "starts_with_bos"]


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


@functools.lru_cache(maxsize=1)
def _environment() -> ImmutableSandboxedEnvironment:
    env = ImmutableSandboxedEnvironment(
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
            return self._template.render(variables)
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
