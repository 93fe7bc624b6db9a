"""Supervision trees: static and dynamic supervisors with OTP's restart semantics."""

__all__: list[str] = []
