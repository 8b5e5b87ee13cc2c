"""Dev tooling of modelrollout, never in the product's wheel: the sandbox control plane and the CRD generator."""
