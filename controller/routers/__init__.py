"""Traffic routers: one Protocol, one module per provider (Gateway API, Istio, replica ratio)."""

from controller.routers.base import HeaderRoute, RouterError, TrafficRouter

__all__ = ["HeaderRoute", "RouterError", "TrafficRouter"]
