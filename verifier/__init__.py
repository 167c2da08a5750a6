"""Verification: sandbox, checkers, data, trainer, evaluation, ladder of scales, fitness.
Built by later issues."""
