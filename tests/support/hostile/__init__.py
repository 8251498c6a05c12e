"""Test hostile helpers: servers, harnesses and tools the tests share."""
