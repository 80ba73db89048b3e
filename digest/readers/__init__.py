"""The readers: who gets the newsletter, who asked to, and what they chose.

`subscribers` reads the subscriber file; `audience` merges it with sign-ups less suppressions,
exports and forgets a person; `signup` is double opt-in sign-up, confirmation and preferences
(the pages' logic, without HTTP).
"""
