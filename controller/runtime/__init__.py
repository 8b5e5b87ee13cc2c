"""The operator runtime: watch-fed caches, a work queue with deadlines, bounded reconcile workers."""
