"""`kubectl modelrollout`: the kubectl plugin (view.py draws, cli.py talks to the cluster)."""
