"""Views: HTML pages for browsers, ``views.rest`` for REST clients. No authentication logic
lives here; views ask ``request.user`` and declare permissions."""
