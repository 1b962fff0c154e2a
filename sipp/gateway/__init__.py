"""The Sipp gateway: the first-party JSON/SSE wire profile (:mod:`sipp.gateway.profile`)
shared by the gateway client transport, the gateway server and application-owned routes."""
