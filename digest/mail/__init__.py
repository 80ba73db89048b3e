"""Turning a rendered issue into messages and handing them to SMTP.

`message` builds each MIME message (headers, List-Unsubscribe, DKIM); `smtp` delivers them
through a pool of connections with retries and a rate cap, recording each delivery.
"""
