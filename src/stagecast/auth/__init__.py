"""Accounts, passwords, login sessions, API tokens and invites."""
