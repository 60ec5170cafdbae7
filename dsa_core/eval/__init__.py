"""Evaluation: exact pooled pixel metrics (``metrics``) and SMIYC component metrics (``components``)."""
