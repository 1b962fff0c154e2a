"""The admin dashboard: session and control API plus the single-page app, mounted on the
management listener under the configured ``admin`` route. All state is in memory."""

from sipp.gateway.server.admin.api import COOKIE_NAME, CSRF_HEADER, AdminApp

__all__ = ["COOKIE_NAME", "CSRF_HEADER", "AdminApp"]
