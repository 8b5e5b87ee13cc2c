"""Traffic routers: one Protocol, one module per provider (Gateway API, Istio). Without a mesh the
engine sizes replicas instead (engine/routes.py)."""

from controller.routers.base import HeaderRoute, RouteRefused, RouterError, TrafficRouter

__all__ = ["HeaderRoute", "RouteRefused", "RouterError", "TrafficRouter"]
