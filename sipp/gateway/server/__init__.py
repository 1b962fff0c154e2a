"""The first-party gateway server (``sipp-gateway check|serve --config F``).

Top to bottom: the CLI (:mod:`.cli`) and process runner (:mod:`.serve`); the public and
management ASGI apps (:mod:`.app`, :mod:`.management`, the dashboard in :mod:`.admin`);
the route families (:mod:`.profile_routes`, :mod:`.openai_compat`); running a request's
run (:mod:`.execution`: admission, starting it off the event loop via :mod:`.submission`,
awaiting or streaming it); the shared :class:`~.state.GatewayState`; its parts (targets,
auth, limits, metrics); and the TOML schema (:mod:`.config`) with secrets read at start
(:mod:`.secrets`). ``pyproject.toml`` holds these layers as an import-linter contract.
"""

from sipp.gateway.server.config import GatewayConfig, GatewayConfigError, load_config, parse_config

__all__ = ["GatewayConfig", "GatewayConfigError", "load_config", "parse_config"]
