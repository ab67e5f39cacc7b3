"""The load-and-fault suite (issue 9): ``make loadtest``, or ``python -m tests.load --help``.
See docs/loadtest.md."""
