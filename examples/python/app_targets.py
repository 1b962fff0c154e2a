"""The endpoints behind the FastAPI and Flask examples, configured from the environment.

Both web apps serve the Sipp gateway profile (``/v1/query``, ``/v1/chat``, ``/v1/embed``);
the body's ``model`` field names a target from the table built here:

* ``SIPP_APP_PROVIDER_URL`` set: target ``default`` is an OpenAI-compatible API at that
  URL (``SIPP_APP_PROVIDER_MODEL``, default ``gpt-5-mini``; key ``SIPP_APP_PROVIDER_KEY``)
  and serves query, chat and embed.
* otherwise local models: target ``default`` is ``SIPP_APP_MODEL`` (a GGUF path or a
  packaged model name, default ``gemma``) and, when ``SIPP_APP_EMBED_MODEL`` is set,
  target ``embed`` is that embedding model (mean pooling).

``SIPP_APP_TOKEN``, when set, is the bearer token every request must carry.
"""

from __future__ import annotations

import hmac
import os

from sipp import (
    ContextRuntimeConfig,
    EndpointRef,
    LocalModelDescriptor,
    NativeRuntimeConfig,
    ProviderDescriptor,
    SippClient,
)
from sipp.errors import AuthenticationError, TargetNotFoundError
from sipp.packaged_models import resolve_model


def build_client() -> tuple[SippClient, dict[str, EndpointRef]]:
    """A client with every target registered (local models load now), and the target table."""
    client = SippClient()
    try:
        provider_url = os.environ.get("SIPP_APP_PROVIDER_URL")
        if provider_url:
            descriptor = ProviderDescriptor(
                "openai_compatible",
                os.environ.get("SIPP_APP_PROVIDER_MODEL", "gpt-5-mini"),
                base_url=provider_url,
                api_key=os.environ["SIPP_APP_PROVIDER_KEY"],
            )
            return client, {"default": client.add("default", descriptor)}
        model = resolve_model(os.environ.get("SIPP_APP_MODEL", "gemma"))
        targets = {"default": client.add("default", LocalModelDescriptor(model))}
        embed_model = os.environ.get("SIPP_APP_EMBED_MODEL")
        if embed_model:
            config = NativeRuntimeConfig(
                context=ContextRuntimeConfig(embeddings=True, pooling="mean")
            )
            targets["embed"] = client.add(
                "embed", LocalModelDescriptor(resolve_model(embed_model), config)
            )
        return client, targets
    except BaseException:
        client.close()
        raise


def find_target(targets: dict[str, EndpointRef], name: str) -> EndpointRef:
    """The endpoint for a body's ``model`` field, or a 404-class error naming the choices."""
    try:
        return targets[name]
    except KeyError:
        known = ", ".join(sorted(targets))
        raise TargetNotFoundError(f"unknown target {name!r} (known: {known})") from None


def check_bearer(authorization: str | None) -> None:
    """Refuse the request (401-class error) unless it carries ``SIPP_APP_TOKEN``."""
    token = os.environ.get("SIPP_APP_TOKEN")
    if not token:
        return
    scheme, _, value = (authorization or "").partition(" ")
    if scheme.lower() != "bearer" or not hmac.compare_digest(
        value.strip().encode(), token.encode()
    ):
        raise AuthenticationError("missing or invalid bearer token")
