"""Fake smacv2.env (see smacv2/__init__.py)."""
