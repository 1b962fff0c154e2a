"""The first-party gateway server (``sipp-gateway check|serve --config F``).

TOML config (:mod:`.config`), secrets read at start (:mod:`.secrets`), the ASGI apps of the
public and management listeners (:mod:`.app`) and the process runner (:mod:`.serve`).
"""

from sipp.gateway.server.config import GatewayConfig, GatewayConfigError, load_config, parse_config

__all__ = ["GatewayConfig", "GatewayConfigError", "load_config", "parse_config"]
