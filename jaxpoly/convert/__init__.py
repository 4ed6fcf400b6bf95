"""Converters from other model formats to :class:`jaxpoly.Network`."""
