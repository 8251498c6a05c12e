"""The web inbox of ``smtpmail sink --web``: captured messages in a browser.

``store`` keeps the messages (in memory or in a Maildir) and tells listeners
when one arrives; ``mime`` reads a message for display; ``lint`` says what is
wrong with one; ``web`` serves the pages and the JSON API (aiohttp, on the
capture server's own event loop); ``testing`` starts a sink for a test suite.
Nothing here is imported unless ``--web`` (or the test helper) asks for it.
"""
