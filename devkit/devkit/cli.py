"""`modelrollout sandbox`: the local control plane, built from Go modules (the product's CLI finds
this through the `modelrollout.sandbox` entry point)."""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import fields

from devkit.sandbox.errors import SandboxError


def main(args: argparse.Namespace) -> int:
    try:
        return _sandbox(args)
    except SandboxError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1


def _sandbox(args: argparse.Namespace) -> int:
    from devkit.sandbox.cluster import Sandbox, list_instances

    if args.action == "build":
        from devkit.sandbox.build import ENVOY_GATEWAY, ensure_binaries, ensure_tool

        binaries = ensure_binaries()
        # The e2e data plane's gateway: the tests and the demo route through it.
        gateway = ensure_tool(ENVOY_GATEWAY)
        print("sandbox binaries ready, in", binaries.kube_apiserver.parent.parent)
        for field_ in fields(binaries):
            print(f"  {field_.name.replace('_', '-'):24} {getattr(binaries, field_.name)}")
        print(f"  {'envoy-gateway':24} {gateway}")
        return 0
    sandbox = Sandbox(name=args.name, apiserver_port=getattr(args, "port", None))
    if args.action == "up":
        state = sandbox.up(install_crds=not args.no_crds, install_modelrollout_crd=not args.no_modelrollout_crd,
                           gateway=args.gateway)
        print(f"sandbox {state.name} is up in {state.timings['ready_s']:.1f}s")
        print(f"export KUBECONFIG={state.kubeconfig}")
    elif args.action == "down":
        sandbox.down()
        print(f"sandbox {sandbox.name} is down")
    elif args.action == "heal":
        restarted = sandbox.heal()
        print(f"restarted: {', '.join(restarted)}" if restarted else "every component is running")
    elif args.action == "status":
        names = [args.name] if args.name else list_instances()
        statuses = [Sandbox(name=name).status() for name in names]
        print(json.dumps(statuses, indent=2))
        return 0 if statuses and all(status["running"] for status in statuses) else 1
    return 0
