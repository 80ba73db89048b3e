"""Bounce and complaint reports: reading them, fetching them, acting on them.

`report` reads one message (DSN, ARF, provider JSON, prose) into a `Report`; `mailbox` fetches
reports from IMAP, a Maildir or standard input; `apply` ties a report to a delivery digest made
and suppresses the address when it must.
"""
