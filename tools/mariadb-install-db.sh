#!/bin/sh
# Initialises a throw-away MariaDB data directory for the test suite (pytest-mysql) and for
# loadtest/stack.py. MariaDB's default gives root unix_socket authentication only; the tests and
# gunicorn connect over TCP, so root gets a normal (empty) password on this loopback-only server.
exec mariadb-install-db --auth-root-authentication-method=normal "$@"
