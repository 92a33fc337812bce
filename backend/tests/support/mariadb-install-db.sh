#!/bin/sh
# pytest-mysql runs this to initialise a data directory. MariaDB's default gives root
# unix_socket authentication only; the tests and gunicorn connect over TCP, so root gets a
# normal (empty) password on this throw-away, loopback-only server.
exec mariadb-install-db --auth-root-authentication-method=normal "$@"
