"""The Kubernetes layer, at the bottom: typed clients, the watch-fed cache views and labels, own writes."""
