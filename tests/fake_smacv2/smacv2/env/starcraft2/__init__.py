"""Fake smacv2.env.starcraft2 (see smacv2/__init__.py)."""
