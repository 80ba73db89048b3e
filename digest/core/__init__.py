"""The ground floor: what every capability shares and nothing of digest's own is imported by.

Errors and their exit codes, the frozen dataclasses the stages pass (`models`), signed tokens,
the canonical form of an address, dates and the crontab reader, header-value guards, redaction of
credentials in logs, and the stop signal a send watches.
"""
