"""Browser end-to-end tests of the page in frontend/ (headless Debian Chromium + Playwright)."""
