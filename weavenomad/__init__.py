"""weavenomad: a multi-tenant Weave Net overlay for Nomad, with Consul answering Weave addresses."""

__version__ = "0.1.0"
