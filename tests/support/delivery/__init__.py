"""Test delivery helpers: servers, harnesses and tools the tests share."""
