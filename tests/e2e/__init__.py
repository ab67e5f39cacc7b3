"""End-to-end tests: the login lifecycle in Debian's headless Chromium, driven by Playwright."""
