"""What `digest check`, `digest serve` and the scheduler warn an editor or operator about."""

from __future__ import annotations

# The values shipped in deploy/digest.env.example and the docs: a secret equal to one of these is
# public knowledge, so anyone could forge unsubscribe links.
PLACEHOLDER_SECRETS = frozenset({"change-me", "changeme", "secret", "your-secret-here"})
MIN_SECRET_BYTES = 32


def secret_warnings(secret: str) -> list[str]:
    """Warnings for a signing secret that is a known placeholder or too short to be safe."""
    if secret.strip().lower() in PLACEHOLDER_SECRETS:
        return [
            "the signing secret is a placeholder from the examples: anyone could forge "
            "unsubscribe links; set DIGEST_SECRET to the output of "
            '`python3 -c "import secrets; print(secrets.token_urlsafe(32))"`'
        ]
    if len(secret.encode("utf-8")) < MIN_SECRET_BYTES:
        return [
            f"the signing secret is shorter than {MIN_SECRET_BYTES} bytes: use a long random one, "
            'e.g. from `python3 -c "import secrets; print(secrets.token_urlsafe(32))"`'
        ]
    return []
