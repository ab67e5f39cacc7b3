"""``make benchmark``: the project measured side by side with anchors it defines itself.

Every figure is a ratio to an anchor served by the same waitress settings in the same run,
because the machine (2 cores, shared) changes its absolute speed from minute to minute:

* ``bare-json``: a bare Pyramid JSON view answering ``serverInfo``'s eight fields (what
  ``serverInfo`` minimally costs);
* ``bare-cookie``: a bare Pyramid view that hashes the cookie and does one indexed SELECT
  of session JOIN user through SQLAlchemy Core (what a cookie check minimally costs).

``make benchmark-django`` compares the cookie request with Django 5.2 (database sessions,
``login_required``: ``django_app.py``, run by a venv of its own), the issue's outside row,
with one more anchor: ``driver-cookie``, the bare cookie view's SELECT on a driver
connection each thread keeps (no SQLAlchemy at run time).

``wrk`` (a C load generator) drives the servers, each in its own processes, in
round-robin rounds; the median of the rounds is reported. See docs/performance.md.
"""
